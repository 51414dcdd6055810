"""What the call logic asks of the SIP shell: send through transactions, set timers, keep records.

The registrar and the B2BUA call this interface and never touch a socket, the clock or the
database; `callplane.pbx.server.SipServer` implements it over asyncio, and tests can implement it
with lists.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

from callplane.core.sip.address import Address
from callplane.core.sip.message import Request, Response
from callplane.core.sip.transaction import TxKey
from callplane.store.records import CdrRec


class MediaBridge(Protocol):
    """The relay of one call's audio: port `a_port` faces the caller, `b_port` the callee."""

    @property
    def a_port(self) -> int: ...

    @property
    def b_port(self) -> int: ...

    def expect_a(self, host: str, port: int) -> None:
        """The caller's advertised RTP address (the port still latches onto its real source)."""
        ...

    def expect_b(self, host: str, port: int) -> None:
        """The callee's advertised RTP address."""
        ...

    def allow(self, payload_types: tuple[int, ...]) -> None:
        """Payload types an SDP of the call named; packets of any other type are dropped."""
        ...

    def close(self) -> None:
        """Release both ports."""
        ...


class Endpoint(Protocol):
    """The shell's side of the transaction user."""

    def send_request(self, request: Request, dest: Address) -> TxKey:
        """Start a client transaction for `request` (not ACK)."""
        ...

    def send_response(self, tx: TxKey, response: Response) -> None:
        """Answer through the server transaction `tx`; ignored if it is gone."""
        ...

    def send_ack(self, ack: Request, dest: Address) -> None:
        """Send an ACK for a 2xx (end to end, no transaction)."""
        ...

    def via(self, transport: str, dest: Address) -> str:
        """A Via value for a new request of ours, with a fresh branch and rport."""
        ...

    def contact(self, transport: str, dest: Address, user: str = "callplane") -> str:
        """Our Contact for dialogs with a peer at `dest`."""
        ...

    def start_timer(self, key: Hashable, at: float) -> None:
        """Call the TU's `timer_fired(key, now)` at `at` (epoch seconds); restarting replaces."""
        ...

    def cancel_timer(self, key: Hashable) -> None:
        """Forget a TU timer; a late firing is not delivered."""
        ...

    def local_host(self, dest: Address) -> str:
        """Our address as a peer at `dest` sees it (for SDP c= lines)."""
        ...

    def open_media(self) -> MediaBridge | None:
        """Two relay ports for a new call, or None when media is not anchored."""
        ...

    def write_cdr(self, cdr: CdrRec) -> None:
        """Persist a call detail record (durable once the shell's writer commits it)."""
        ...
