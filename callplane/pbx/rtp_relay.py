"""RTP relay: the media of a bridged call, anchored in Callplane, forwarded without decoding.

Each leg of a call gets an even RTP port of ours; the odd port above it is left for RTCP
(RFC 3550 §11), which the relay does not carry yet. A packet arriving on one leg's port goes
out of the other leg's port to that leg's peer, untouched: the plain bridge never decodes audio
(numpy only runs where audio is transformed).

Symmetric RTP (RFC 4961): a peer behind NAT sends from another address than its SDP says, so a
port latches onto the source of the first valid packet and from then on accepts only that source.
Packets from anyone else, that are not RTP version 2, or whose payload type the call did not
negotiate are dropped and counted, never crashed on. The hot path allocates nothing beyond the
datagram asyncio hands us and logs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

log = logging.getLogger("callplane.rtp")

RTP_MIN_HEADER_BYTES = 12  # RFC 3550 §5.1: the fixed header
RTP_VERSION_BITS = 0x80  # RFC 3550 §5.1: version 2 in the two top bits of the first byte
PORT_RANGE = (20_000, 30_000)  # Asterisk's and FreeSWITCH's default RTP ports; even = RTP
RTP_SOCKET_BUFFER_BYTES = 1024 * 1024  # several seconds of a call's packets through a stall


@dataclass(slots=True)
class LegCounters:
    """What one leg's port saw: forwarded, and dropped by reason."""

    forwarded: int = 0
    wrong_source: int = 0
    not_rtp: int = 0
    wrong_payload_type: int = 0
    no_peer: int = 0


class RtpPort(asyncio.DatagramProtocol):
    """Our RTP port for one leg: latches onto its peer and forwards to the other leg."""

    def __init__(self, allowed_payload_types: Iterable[int]) -> None:
        self.allowed = frozenset(allowed_payload_types)
        self.remote: tuple[str, int] | None = None
        self.latched = False
        self.other: RtpPort | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.counters = LegCounters()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, so no isinstance check here.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def expect(self, host: str, port: int) -> None:
        """The peer's address from its SDP; the first valid packet may still move it (NAT)."""
        self.remote = (host, port)
        self.latched = False

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        counters = self.counters
        if len(data) < RTP_MIN_HEADER_BYTES or data[0] & 0xC0 != RTP_VERSION_BITS:
            counters.not_rtp += 1
            return
        if data[1] & 0x7F not in self.allowed:
            counters.wrong_payload_type += 1
            return
        if not self.latched:
            self.remote = (str(addr[0]), int(addr[1]))
            self.latched = True
        elif addr != self.remote:  # the (host, port) tuple asyncio made: no allocation here
            counters.wrong_source += 1
            return
        other = self.other
        if other is None or other.remote is None or other.transport is None:
            counters.no_peer += 1
            return
        other.transport.sendto(data, other.remote)
        counters.forwarded += 1

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable: the peer hung up or is not there yet; RTP is loss-tolerant.
        log.debug("rtp port error: %s", exc)


@dataclass
class RtpBridge:
    """Two RTP ports of ours joined back to back: the media of one bridged call.

    Implements `callplane.pbx.endpoint.MediaBridge` for the B2BUA.
    """

    a: RtpPort
    b: RtpPort
    a_port: int
    b_port: int
    _transports: list[asyncio.DatagramTransport] = field(default_factory=list)
    _sockets: list[socket.socket] = field(default_factory=list)
    attaching: list[asyncio.Task[None]] = field(default_factory=list)

    def expect_a(self, host: str, port: int) -> None:
        self.a.expect(host, port)

    def expect_b(self, host: str, port: int) -> None:
        self.b.expect(host, port)

    def allow(self, payload_types: tuple[int, ...]) -> None:
        for side in (self.a, self.b):
            side.allowed = side.allowed | frozenset(payload_types)

    def close(self) -> None:
        """Release both ports, logging what the call's media did (one line per call)."""
        a, b = self.a.counters, self.b.counters
        log.info(
            "rtp %d<->%d: forwarded %d and %d; dropped source %d, not rtp %d, payload type %d",
            self.a_port, self.b_port, a.forwarded, b.forwarded,
            a.wrong_source + b.wrong_source, a.not_rtp + b.not_rtp,
            a.wrong_payload_type + b.wrong_payload_type,
        )  # fmt: skip
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()


class PortAllocator:
    """Hands out even RTP ports from a range, round robin, skipping ports in use."""

    def __init__(self, host: str, port_range: tuple[int, int] = PORT_RANGE) -> None:
        low, high = port_range
        self.host = host
        self._low = low + (low % 2)
        self._high = high
        self._next = self._low
        self._tasks: set[asyncio.Task[None]] = set()

    def bridge_now(self, payload_types: Iterable[int] = ()) -> RtpBridge:
        """A bridge whose ports are bound at once (the B2BUA needs them for the SDP it is
        writing); the sockets join the event loop a moment later, and packets that arrive
        before then wait in the kernel's buffer."""
        loop = asyncio.get_running_loop()
        allowed = tuple(payload_types)
        a, b = RtpPort(allowed), RtpPort(allowed)
        a.other, b.other = b, a
        a_sock, a_port = self._bind_socket()
        try:
            b_sock, b_port = self._bind_socket()
        except OSError:
            a_sock.close()
            raise
        bridge = RtpBridge(a, b, a_port, b_port, [], [a_sock, b_sock])
        for protocol, sock in ((a, a_sock), (b, b_sock)):
            task = loop.create_task(self._attach(bridge, protocol, sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            bridge.attaching.append(task)
        return bridge

    def _bind_socket(self) -> tuple[socket.socket, int]:
        span = (self._high - self._low) // 2
        for _ in range(span):
            port = self._next
            self._next = port + 2 if port + 2 < self._high else self._low
            sock = socket.socket(
                socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM
            )
            try:
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RTP_SOCKET_BUFFER_BYTES)
            except OSError as exc:  # a smaller buffer still works, it just drops sooner
                log.debug("cannot enlarge RTP socket buffer: %s", exc)
            return sock, port
        raise OSError(f"no free RTP port in {self._low}-{self._high}")

    @staticmethod
    async def _attach(bridge: RtpBridge, protocol: RtpPort, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        if sock.fileno() < 0:
            return  # the call ended before its socket joined the loop
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
        except OSError as exc:  # closed meanwhile: the call is over
            log.debug("rtp port not attached: %s", exc)
            return
        if sock.fileno() < 0 or sock not in bridge._sockets:
            transport.close()
            return
        bridge._sockets.remove(sock)
        bridge._transports.append(transport)

    async def stop(self) -> None:
        """Cancel the attachments still under way."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def bridge(self, payload_types: Iterable[int]) -> RtpBridge:
        """`bridge_now`, returning once both ports have joined the event loop."""
        bridge = self.bridge_now(payload_types)
        await asyncio.gather(*bridge.attaching)
        return bridge
