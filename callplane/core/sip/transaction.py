"""SIP transactions (RFC 3261 §17, with the RFC 6026 "Accepted" state), sans-IO.

One `TransactionLayer` holds every client and server transaction of an endpoint, keyed by Via
branch. It takes parsed messages, timer firings and transport failures, and returns actions: what
to send where, which timers to start or cancel, and what to tell the transaction user (TU).

Choices worth knowing:

- The layer never sends `100 Trying` on its own (RFC 3261 §17.2.1 lets it after 200 ms): the TU
  answers 100 at once, which is simpler and deterministic.
- An INVITE server transaction that sends a 2xx enters RFC 6026's Accepted state: retransmitted
  INVITEs are absorbed, and on unreliable transports the layer itself retransmits the 2xx (Timer
  G, RFC 3261 §13.3.1.4) until the ACK arrives (matched by Call-ID and CSeq number, as that ACK
  has a new branch). The ACK still goes up to the TU. Timer L (64*T1) ends the transaction; if no
  ACK came, `TransactionTimedOut` tells the TU to end the session with a BYE.
- An INVITE client transaction that receives a 2xx enters Accepted too (RFC 6026 §7.2): every 2xx,
  retransmissions included, goes up to the TU, which must ACK each (RFC 3261 §13.2.2.4). Timer M
  (64*T1) ends it; later 2xx retransmissions come up as `StrayResponse`.
- An INVITE client transaction in Proceeding runs Timer C (RFC 3261 §16.6: more than 3 minutes),
  restarted by each provisional response, so a peer that never answers cannot leak a transaction.
- Requests whose branch lacks the magic cookie (RFC 2543 peers) are matched by a key built from
  Call-ID, From tag, CSeq number, top Via sent-by and Request-URI (RFC 3261 §17.2.3's fallback
  without the To tag, so the ACK for a non-2xx final response matches its INVITE).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from callplane.core.sip.address import Address
from callplane.core.sip.dialog import BRANCH_COOKIE, ack_for_non2xx
from callplane.core.sip.errors import LocalProtocolError
from callplane.core.sip.headers import Via
from callplane.core.sip.message import Message, Request, Response

_log = logging.getLogger(__name__)

T1_S = 0.5  # RFC 3261 §17.1.1.1 / Table 4: round-trip time estimate
T2_S = 4.0  # RFC 3261 Table 4: longest retransmit interval (non-INVITE requests, INVITE answers)
T4_S = 5.0  # RFC 3261 Table 4: longest time a message stays in the network
TIMER_D_UNRELIABLE_S = 32.0  # RFC 3261 §17.1.1.2: "at least 32 seconds" for unreliable transports
TIMER_C_S = 181.0  # RFC 3261 §16.6 step 11: Timer C "MUST be set for greater than 3 minutes"
MAGIC_COOKIE = BRANCH_COOKIE  # RFC 3261 §8.1.1.7: branches of RFC 3261 elements start with this
DEFAULT_SIP_PORT = 5060  # RFC 3261 §18.2.2: the port to answer when the Via names none
FALLBACK_KEY_PREFIX = "rfc2543:"  # keys of RFC 2543 transactions, never a valid branch


@dataclass(frozen=True, slots=True)
class TxKey:
    """Identifies a transaction (RFC 3261 §17.1.3 / §17.2.3).

    `method` is the request method, except that an ACK matches its INVITE server transaction; a
    CANCEL has its own transaction with method CANCEL and the branch of the INVITE it cancels.
    """

    branch: str
    method: str
    server: bool
    # RFC 3261 §17.2.3: a server transaction is the branch AND the top Via's sent-by, so two
    # clients that happen to choose the same branch are not confused. Empty on client keys.
    sent_by: str = ""


@dataclass(frozen=True, slots=True)
class TimerKey:
    """A transaction timer named as in RFC 3261 Table 4 ("A".."K"), or RFC 6026's "L" and "M"."""

    tx: TxKey
    name: str


class TxKind(enum.Enum):
    """The four transaction state machines of RFC 3261 §17."""

    INVITE_CLIENT = "INVITE client"
    NON_INVITE_CLIENT = "non-INVITE client"
    INVITE_SERVER = "INVITE server"
    NON_INVITE_SERVER = "non-INVITE server"


class TxState(enum.Enum):
    """Transaction states of RFC 3261 §17 and RFC 6026 (Accepted)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send `message` to `dest`."""

    message: Message
    dest: Address


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Fire `timer_fired(key, at)` at time `at`; starting a running key replaces it."""

    key: TimerKey
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Forget the timer `key`; a late firing is harmless (ignored)."""

    key: TimerKey


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU.

    `tx` is None for an ACK to a 2xx (no transaction, RFC 3261 §13.2.2.4) and for stray ACKs.
    For a CANCEL, `tx` is its own server transaction: the TU answers it 200 and the INVITE 487.
    """

    tx: TxKey | None
    request: Request
    source: Address


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for a client transaction; 2xx retransmissions to an INVITE come up too."""

    tx: TxKey
    response: Response


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matches no client transaction (RFC 3261 §18.1.2): the TU decides."""

    response: Response


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """A transaction gave up: the TU treats a client one as a response with `status`.

    408 for Timers B, C and F; 503 for a transport failure (RFC 3261 §8.1.3.1). For a server
    transaction: Timer H (the ACK never came), or Timer L without an ACK to the 2xx (§13.3.1.4).
    """

    tx: TxKey
    status: int = 408


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    """The transaction is gone; its key will not appear again."""

    tx: TxKey


Action = (
    Send
    | StartTimer
    | CancelTimer
    | RequestReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimedOut
    | TransactionTerminated
)

# --- the transition table ----------------------------------------------------------------------

_IC = TxKind.INVITE_CLIENT
_NC = TxKind.NON_INVITE_CLIENT
_IS = TxKind.INVITE_SERVER
_NS = TxKind.NON_INVITE_SERVER
_S = TxState

# (kind, state, input) -> next state. Inputs: "1xx", "2xx", "300-699" (responses received),
# "send 1xx", "send 2xx", "send 300-699" (responses sent by the TU), "request" (a retransmission),
# "ack", a timer name, "transport error". A network input missing here is absorbed; a TU input
# missing here is a LocalProtocolError.
TRANSITIONS: dict[tuple[TxKind, TxState, str], TxState] = {
    # INVITE client: RFC 3261 §17.1.1.2 figure 5, RFC 6026 §7.2 figure 3.
    (_IC, _S.CALLING, "A"): _S.CALLING,
    (_IC, _S.CALLING, "B"): _S.TERMINATED,
    (_IC, _S.CALLING, "1xx"): _S.PROCEEDING,
    (_IC, _S.CALLING, "2xx"): _S.ACCEPTED,
    (_IC, _S.CALLING, "300-699"): _S.COMPLETED,
    (_IC, _S.PROCEEDING, "1xx"): _S.PROCEEDING,
    (_IC, _S.PROCEEDING, "2xx"): _S.ACCEPTED,
    (_IC, _S.PROCEEDING, "300-699"): _S.COMPLETED,
    (_IC, _S.PROCEEDING, "C"): _S.TERMINATED,
    (_IC, _S.COMPLETED, "300-699"): _S.COMPLETED,
    (_IC, _S.COMPLETED, "D"): _S.TERMINATED,
    (_IC, _S.ACCEPTED, "2xx"): _S.ACCEPTED,
    (_IC, _S.ACCEPTED, "M"): _S.TERMINATED,
    # Non-INVITE client: RFC 3261 §17.1.2.2 figure 6.
    (_NC, _S.TRYING, "E"): _S.TRYING,
    (_NC, _S.TRYING, "F"): _S.TERMINATED,
    (_NC, _S.TRYING, "1xx"): _S.PROCEEDING,
    (_NC, _S.TRYING, "2xx"): _S.COMPLETED,
    (_NC, _S.TRYING, "300-699"): _S.COMPLETED,
    (_NC, _S.PROCEEDING, "E"): _S.PROCEEDING,
    (_NC, _S.PROCEEDING, "F"): _S.TERMINATED,
    (_NC, _S.PROCEEDING, "1xx"): _S.PROCEEDING,
    (_NC, _S.PROCEEDING, "2xx"): _S.COMPLETED,
    (_NC, _S.PROCEEDING, "300-699"): _S.COMPLETED,
    (_NC, _S.COMPLETED, "K"): _S.TERMINATED,
    # INVITE server: RFC 3261 §17.2.1 figure 7, RFC 6026 §7.1 figure 5.
    (_IS, _S.PROCEEDING, "request"): _S.PROCEEDING,
    (_IS, _S.PROCEEDING, "send 1xx"): _S.PROCEEDING,
    (_IS, _S.PROCEEDING, "send 2xx"): _S.ACCEPTED,
    (_IS, _S.PROCEEDING, "send 300-699"): _S.COMPLETED,
    (_IS, _S.COMPLETED, "request"): _S.COMPLETED,
    (_IS, _S.COMPLETED, "G"): _S.COMPLETED,
    (_IS, _S.COMPLETED, "H"): _S.TERMINATED,
    (_IS, _S.COMPLETED, "ack"): _S.CONFIRMED,
    (_IS, _S.CONFIRMED, "I"): _S.TERMINATED,
    (_IS, _S.ACCEPTED, "send 2xx"): _S.ACCEPTED,
    (_IS, _S.ACCEPTED, "ack"): _S.ACCEPTED,
    (_IS, _S.ACCEPTED, "G"): _S.ACCEPTED,
    (_IS, _S.ACCEPTED, "L"): _S.TERMINATED,
    # Non-INVITE server: RFC 3261 §17.2.2 figure 8.
    (_NS, _S.TRYING, "send 1xx"): _S.PROCEEDING,
    (_NS, _S.TRYING, "send 2xx"): _S.COMPLETED,
    (_NS, _S.TRYING, "send 300-699"): _S.COMPLETED,
    (_NS, _S.PROCEEDING, "request"): _S.PROCEEDING,
    (_NS, _S.PROCEEDING, "send 1xx"): _S.PROCEEDING,
    (_NS, _S.PROCEEDING, "send 2xx"): _S.COMPLETED,
    (_NS, _S.PROCEEDING, "send 300-699"): _S.COMPLETED,
    (_NS, _S.COMPLETED, "request"): _S.COMPLETED,
    (_NS, _S.COMPLETED, "J"): _S.TERMINATED,
}
# RFC 3261 §17.1.4 / §17.2.4: a transport failure ends a transaction in any state it can be in.
for _kind, _state in {(kind, state) for kind, state, _ in TRANSITIONS}:
    TRANSITIONS[(_kind, _state, "transport error")] = TxState.TERMINATED

_INITIAL_STATE = {_IC: _S.CALLING, _NC: _S.TRYING, _IS: _S.PROCEEDING, _NS: _S.TRYING}


def _response_class(status: int) -> str:
    if status < 200:
        return "1xx"
    if status < 300:
        return "2xx"
    return "300-699"


class _Tx:
    """One transaction's mutable state; private to the layer."""

    __slots__ = (
        "ack",
        "ack_id",
        "acked",
        "dest",
        "interval_s",
        "key",
        "kind",
        "last_response",
        "reliable",
        "request",
        "state",
        "timers",
    )

    def __init__(self, key: TxKey, kind: TxKind, request: Request, dest: Address) -> None:
        self.key = key
        self.kind = kind
        self.state = _INITIAL_STATE[kind]
        self.request = request
        self.dest = dest  # client: where requests go; server: where responses go
        self.reliable = dest.reliable
        self.last_response: Response | None = None
        self.ack: Request | None = None  # INVITE client: the ACK for a non-2xx final response
        self.ack_id: tuple[str, int] | None = None  # INVITE server in Accepted: (Call-ID, CSeq)
        self.acked = False
        self.interval_s = 0.0
        self.timers: set[str] = set()


def response_destination(via: Via, source: Address) -> Address:
    """Where to send responses to a request that arrived from `source` with top Via `via`.

    Reliable transports answer on the connection the request came in on (RFC 3261 §18.2.2).
    Unreliable: with rport, the received address and the rport value (RFC 3581 §4); otherwise the
    received address (or the Via host) and the Via port, default 5060 (RFC 3261 §18.2.2).
    """
    if source.reliable:
        return source
    received = via.received
    rport = via.rport
    if rport is not None and rport.isdigit():
        return Address(source.transport, received or source.host, int(rport))
    return Address(source.transport, received or via.host, via.port or DEFAULT_SIP_PORT)


def stamp_via(request: Request, source: Address) -> Via | None:
    """Record where a request came from in its top Via (RFC 3261 §18.2.1, RFC 3581 §4).

    Adds `received` when the Via host differs from the source host (always when the Via asks for
    rport) and fills an empty `rport` with the source port; the request is changed in place.
    Returns the top Via as it now stands, None if the request has none.
    """
    vias = request.via
    if not vias:
        return None
    top = vias[0]
    if top.has_empty_rport:
        top = top.with_params(received=source.host, rport=str(source.port))
    elif top.host != source.host:
        top = top.with_params(received=source.host)
    else:
        return top
    request.replace_top_via(top)
    return top


class TransactionLayer:
    """All transactions of one SIP endpoint, keyed by branch (RFC 3261 §17.1.3 / §17.2.3)."""

    def __init__(
        self,
        *,
        t1_s: float = T1_S,
        t2_s: float = T2_S,
        t4_s: float = T4_S,
        timer_c_s: float = TIMER_C_S,
    ) -> None:
        self._t1_s = t1_s
        self._t2_s = t2_s
        self._t4_s = t4_s
        self._timer_c_s = timer_c_s
        self._txs: dict[TxKey, _Tx] = {}
        self._accepted: dict[tuple[str, int], _Tx] = {}

    def __len__(self) -> int:
        """The number of live transactions."""
        return len(self._txs)

    def state(self, tx: TxKey) -> TxState:
        """The state of a transaction; TERMINATED once it is gone."""
        found = self._txs.get(tx)
        return found.state if found is not None else TxState.TERMINATED

    def invite_for_cancel(self, cancel: TxKey) -> TxKey | None:
        """The live INVITE server transaction that a CANCEL one targets (RFC 3261 §9.2)."""
        key = TxKey(cancel.branch, "INVITE", True, cancel.sent_by)
        return key if key in self._txs else None

    # --- client side ---------------------------------------------------------------------------

    def send_request(
        self, request: Request, dest: Address, now: float
    ) -> tuple[TxKey, list[Action]]:
        """Start a client transaction: INVITE (RFC 3261 §17.1.1) or non-INVITE (§17.1.2)."""
        method = request.method
        if method == "ACK":
            raise LocalProtocolError("ACK is not a transaction: use send_ack")
        vias = request.via
        if not vias or not (vias[0].branch or "").startswith(MAGIC_COOKIE):
            raise LocalProtocolError(f"the top Via needs a branch starting {MAGIC_COOKIE}")
        key = TxKey(vias[0].branch or "", method, False)
        if key in self._txs:
            raise LocalProtocolError(f"a client transaction {key.branch} {method} already exists")
        kind = _IC if method == "INVITE" else _NC
        tx = _Tx(key, kind, request, dest)
        self._txs[key] = tx
        actions: list[Action] = [Send(request, dest)]
        if kind is _IC:
            if not tx.reliable:  # RFC 3261 §17.1.1.2: Timer A only on unreliable transports
                tx.interval_s = self._t1_s
                self._start(tx, "A", now + self._t1_s, actions)
            self._start(tx, "B", now + 64 * self._t1_s, actions)
        else:
            if not tx.reliable:  # RFC 3261 §17.1.2.2: Timer E only on unreliable transports
                tx.interval_s = self._t1_s
                self._start(tx, "E", now + self._t1_s, actions)
            self._start(tx, "F", now + 64 * self._t1_s, actions)
        return key, actions

    def send_ack(self, ack: Request, dest: Address) -> list[Action]:
        """Send the ACK for a 2xx: end to end, no transaction (RFC 3261 §13.2.2.4, §17.1.1.3)."""
        if ack.method != "ACK":
            raise LocalProtocolError(f"send_ack takes an ACK, not {ack.method}")
        return [Send(ack, dest)]

    def _receive_response(self, response: Response, now: float) -> list[Action]:
        vias = response.via
        if not vias:
            return [StrayResponse(response)]
        tx = self._txs.get(TxKey(vias[0].branch or "", response.cseq.method, False))
        if tx is None:
            return [StrayResponse(response)]
        cls = _response_class(response.status)
        new = TRANSITIONS.get((tx.kind, tx.state, cls))
        if new is None:
            return []  # e.g. a provisional response after a final one: absorbed
        old = tx.state
        self._move(tx, cls, new)
        actions: list[Action] = []
        if tx.kind is _IC:
            if new is _S.PROCEEDING:
                self._cancel(tx, "A", actions)
                self._cancel(tx, "B", actions)
                self._start(tx, "C", now + self._timer_c_s, actions)
                actions.append(ResponseReceived(tx.key, response))
            elif new is _S.ACCEPTED:
                if old is not _S.ACCEPTED:
                    self._cancel_all(tx, actions)
                    self._start(tx, "M", now + 64 * self._t1_s, actions)
                actions.append(ResponseReceived(tx.key, response))
            elif old is _S.COMPLETED:  # a retransmitted final response: ACK it again, absorb it
                if tx.ack is not None:
                    actions.append(Send(tx.ack, tx.dest))
            else:
                self._cancel_all(tx, actions)
                tx.ack = ack_for_non2xx(tx.request, response)
                actions.append(Send(tx.ack, tx.dest))
                actions.append(ResponseReceived(tx.key, response))
                self._wait_or_end(tx, "D", TIMER_D_UNRELIABLE_S, now, actions)
        elif old is not _S.COMPLETED:
            actions.append(ResponseReceived(tx.key, response))
            if new is _S.COMPLETED:
                self._cancel_all(tx, actions)
                self._wait_or_end(tx, "K", self._t4_s, now, actions)
        return actions

    # --- server side ---------------------------------------------------------------------------

    def send_response(self, tx: TxKey, response: Response, now: float) -> list[Action]:
        """Send the TU's response through its server transaction (RFC 3261 §17.2.1 / §17.2.2)."""
        found = self._txs.get(tx)
        if found is None or not tx.server:
            raise LocalProtocolError(f"no live server transaction {tx.branch} {tx.method}")
        event = "send " + _response_class(response.status)
        new = TRANSITIONS.get((found.kind, found.state, event))
        if new is None:
            raise LocalProtocolError(
                f"cannot send {response.status} in state {found.state.value} of {found.kind.value}"
            )
        old = found.state
        self._move(found, event, new)
        found.last_response = response
        actions: list[Action] = [Send(response, found.dest)]
        if new is old:
            return actions
        if new is _S.COMPLETED:
            if found.kind is _IS:
                if not found.reliable:  # RFC 3261 §17.2.1: Timer G only on unreliable transports
                    found.interval_s = self._t1_s
                    self._start(found, "G", now + self._t1_s, actions)
                self._start(found, "H", now + 64 * self._t1_s, actions)
            else:
                self._wait_or_end(found, "J", 64 * self._t1_s, now, actions)
        elif new is _S.ACCEPTED:
            found.ack_id = (found.request.call_id, found.request.cseq.seq)
            self._accepted[found.ack_id] = found
            if not found.reliable:  # RFC 3261 §13.3.1.4: the 2xx is retransmitted until ACKed
                found.interval_s = self._t1_s
                self._start(found, "G", now + self._t1_s, actions)
            self._start(found, "L", now + 64 * self._t1_s, actions)
        return actions

    def _receive_request(self, request: Request, source: Address, now: float) -> list[Action]:
        method = request.method
        vias = request.via
        if not vias:
            return []  # RFC 3261 §8.2.2: no Via, no way to answer; the parser rejects these
        branch = vias[0].branch or ""
        sent_by = ""
        if branch.startswith(MAGIC_COOKIE):
            sent_by = vias[0].sent_by.lower()
        else:
            branch = _fallback_branch(request, vias[0])
        key = TxKey(branch, "INVITE" if method == "ACK" else method, True, sent_by)
        tx = self._txs.get(key)
        if tx is None:
            if method == "ACK":
                return self._receive_ack_for_2xx(request, source)
            kind = _IS if method == "INVITE" else _NS
            top = stamp_via(request, source) or vias[0]
            tx = _Tx(key, kind, request, response_destination(top, source))
            self._txs[key] = tx
            return [RequestReceived(key, request, source)]
        event = "ack" if method == "ACK" else "request"
        new = TRANSITIONS.get((tx.kind, tx.state, event))
        if new is None:
            return []  # absorbed: a retransmission with nothing to answer yet, or a late ACK
        self._move(tx, event, new)
        actions: list[Action] = []
        if event == "request":
            if tx.last_response is not None:
                actions.append(Send(tx.last_response, tx.dest))
        elif new is _S.CONFIRMED:
            self._cancel_all(tx, actions)
            self._wait_or_end(tx, "I", self._t4_s, now, actions)
        else:  # an ACK reusing the INVITE's branch in Accepted: an ACK for the 2xx all the same
            return self._receive_ack_for_2xx(request, source)
        return actions

    def _receive_ack_for_2xx(self, request: Request, source: Address) -> list[Action]:
        actions: list[Action] = []
        tx = self._accepted.get((request.call_id, request.cseq.seq))
        if tx is not None and not tx.acked:
            tx.acked = True
            self._cancel(tx, "G", actions)
        stamp_via(request, source)
        actions.append(RequestReceived(None, request, source))
        return actions

    # --- inputs from the shell -----------------------------------------------------------------

    def receive(self, message: Message, source: Address, now: float) -> list[Action]:
        """A parsed message from `source`: match it to a transaction or pass it up (§17)."""
        if isinstance(message, Response):
            return self._receive_response(message, now)
        return self._receive_request(message, source, now)

    def timer_fired(self, key: TimerKey, now: float) -> list[Action]:
        """A timer came due: A/E/G retransmit, B/C/F/H time out, D/I/J/K/L/M terminate."""
        tx = self._txs.get(key.tx)
        if tx is None or key.name not in tx.timers:
            return []  # cancelled or replaced: a late firing is harmless
        tx.timers.discard(key.name)
        name = key.name
        new = TRANSITIONS.get((tx.kind, tx.state, name))
        if new is None:
            return []
        self._move(tx, name, new)
        actions: list[Action] = []
        if name == "A":
            actions.append(Send(tx.request, tx.dest))
            tx.interval_s *= 2  # RFC 3261 §17.1.1.2: Timer A doubles, no cap
            self._start(tx, "A", now + tx.interval_s, actions)
        elif name == "E":
            actions.append(Send(tx.request, tx.dest))
            # RFC 3261 §17.1.2.2: doubling capped at T2 in Trying, T2 in Proceeding
            if tx.state is _S.TRYING:
                tx.interval_s = min(2 * tx.interval_s, self._t2_s)
            else:
                tx.interval_s = self._t2_s
            self._start(tx, "E", now + tx.interval_s, actions)
        elif name == "G":
            if tx.last_response is not None and not tx.acked:
                actions.append(Send(tx.last_response, tx.dest))
                # RFC 3261 §17.2.1 / §13.3.1.4: doubling capped at T2
                tx.interval_s = min(2 * tx.interval_s, self._t2_s)
                self._start(tx, "G", now + tx.interval_s, actions)
        elif name in ("B", "C", "F", "H") or (name == "L" and not tx.acked):
            actions.append(TransactionTimedOut(tx.key, 408))
            self._end(tx, actions)
        else:  # D, I, J, K, L after an ACK, M
            self._end(tx, actions)
        return actions

    def transport_failed(self, tx: TxKey, now: float) -> list[Action]:
        """The shell could not send for `tx`: a timeout with status 503 (RFC 3261 §8.1.3.1)."""
        found = self._txs.get(tx)
        if found is None:
            return []
        self._move(found, "transport error", TxState.TERMINATED)
        actions: list[Action] = [TransactionTimedOut(tx, 503)]
        self._end(found, actions)
        return actions

    # --- internals -----------------------------------------------------------------------------

    def _move(self, tx: _Tx, event: str, new: TxState) -> None:
        if _log.isEnabledFor(logging.DEBUG):
            kind, key, old = tx.kind.value, tx.key, tx.state.value
            _log.debug(
                "%s %s %s: %s -> %s -> %s", kind, key.branch, key.method, old, event, new.value
            )
        tx.state = new

    def _start(self, tx: _Tx, name: str, at: float, actions: list[Action]) -> None:
        tx.timers.add(name)
        actions.append(StartTimer(TimerKey(tx.key, name), at))

    def _cancel(self, tx: _Tx, name: str, actions: list[Action]) -> None:
        if name in tx.timers:
            tx.timers.discard(name)
            actions.append(CancelTimer(TimerKey(tx.key, name)))

    def _cancel_all(self, tx: _Tx, actions: list[Action]) -> None:
        for name in sorted(tx.timers):
            actions.append(CancelTimer(TimerKey(tx.key, name)))
        tx.timers.clear()

    def _wait_or_end(
        self, tx: _Tx, name: str, wait_s: float, now: float, actions: list[Action]
    ) -> None:
        """Start a wait state's timer, or end at once on reliable transports (D, I, J, K are 0)."""
        if tx.reliable:
            self._move(tx, name, TxState.TERMINATED)
            self._end(tx, actions)
        else:
            self._start(tx, name, now + wait_s, actions)

    def _end(self, tx: _Tx, actions: list[Action]) -> None:
        self._cancel_all(tx, actions)
        tx.state = TxState.TERMINATED
        del self._txs[tx.key]
        if tx.ack_id is not None and self._accepted.get(tx.ack_id) is tx:
            del self._accepted[tx.ack_id]
        actions.append(TransactionTerminated(tx.key))


def _fallback_branch(request: Request, via: Via) -> str:
    """A transaction key for an RFC 2543 request (RFC 3261 §17.2.3, without the To tag)."""
    return (
        f"{FALLBACK_KEY_PREFIX}{request.call_id}|{request.from_.tag}|{request.cseq.seq}|"
        f"{via.host}:{via.port}|{request.uri}"
    )
