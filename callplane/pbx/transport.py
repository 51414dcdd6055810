"""SIP transports on asyncio: UDP datagrams and TCP streams, turning bytes into messages.

The transports frame bytes and nothing more: UDP hands each datagram up whole, TCP hands up each
complete message framed by `StreamParser`. Parsing beyond framing, and every rule, lives elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from callplane.core.sip.address import Address
from callplane.core.sip.errors import SipParseError
from callplane.core.sip.message import MAX_MESSAGE_BYTES, Message, StreamParser

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT_S = 600.0  # RFC 5626 keep-alives come every 2 min at most; idle longer is dead
TCP_CONNECT_TIMEOUT_S = 5.0  # a peer that does not accept within this is unreachable for a call
MAX_TCP_CONNECTIONS = 4096  # one per phone or trunk; above this new inbound ones are refused
# A burst of a few hundred calls' messages must not overflow the kernel's default 208 KiB and
# be dropped (each loss costs a 500 ms retransmission, or a failed call when the peer never
# retransmits); the kernel caps this at net.core.rmem_max / wmem_max.
UDP_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024

DatagramHandler = Callable[[bytes, Address], None]
StreamHandler = Callable[[Message | SipParseError, Address], None]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: DatagramHandler) -> None:
        self._on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, so no isinstance check here.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._on_datagram(data, Address("UDP", str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the transaction layer's timers deal with the loss.
        log.debug("udp error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: TcpTransport, remote: Address | None = None) -> None:
        self._owner = owner
        self._parser = StreamParser()
        self.transport: asyncio.Transport | None = None
        self.remote = remote
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.remote is None:
            host, port = transport.get_extra_info("peername")[:2]
            self.remote = Address("TCP", str(host), int(port))
        if not self._owner.register(self.remote, self):
            transport.close()
            return
        self._touch()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self._owner.idle_timeout_s, self.close)

    def data_received(self, data: bytes) -> None:
        assert self.remote is not None
        self._touch()
        try:
            items = self._parser.feed(data)
        except SipParseError as exc:
            log.info("closing TCP connection from %s: %s", self.remote, exc.reason)
            self._owner.on_message(exc, self.remote)
            self.close()
            return
        for item in items:
            self._owner.on_message(item, self.remote)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self.remote is not None:
            self._owner.unregister(self.remote, self)


@dataclass
class UdpTransport:
    """One UDP socket that both receives and sends, so replies leave from the port phones target."""

    host: str
    port: int
    on_datagram: DatagramHandler
    _protocol: _UdpProtocol | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self.on_datagram), local_addr=(self.host, self.port)
        )
        self._protocol = protocol
        if protocol.transport is None:
            return
        sock = protocol.transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, UDP_SOCKET_BUFFER_BYTES)
                except OSError as exc:  # a smaller buffer still works, it just drops sooner
                    log.warning("cannot enlarge UDP socket buffer: %s", exc)
        name = protocol.transport.get_extra_info("sockname")
        if name is not None:
            self.port = int(name[1])

    def send(self, data: bytes, dest: Address) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.sendto(data, (dest.host, dest.port))

    def stop(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()


@dataclass
class TcpTransport:
    """A TCP listener plus the connections phones opened to it or that we opened to peers."""

    host: str
    port: int
    on_message: StreamHandler
    idle_timeout_s: float = TCP_IDLE_TIMEOUT_S
    _server: asyncio.Server | None = None
    _connections: dict[Address, _TcpConnection] = field(default_factory=dict)
    _pending: dict[Address, list[bytes]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TcpConnection(self), self.host, self.port, reuse_address=True
        )

    def register(self, remote: Address, conn: _TcpConnection) -> bool:
        if len(self._connections) >= MAX_TCP_CONNECTIONS and remote not in self._connections:
            log.warning("refusing TCP connection from %s: %d open", remote, MAX_TCP_CONNECTIONS)
            return False
        self._connections[remote] = conn
        return True

    def unregister(self, remote: Address, conn: _TcpConnection) -> None:
        if self._connections.get(remote) is conn:
            del self._connections[remote]

    def send(self, data: bytes, dest: Address) -> None:
        conn = self._connections.get(dest)
        if conn is not None:
            conn.write(data)
            return
        if dest in self._pending:
            self._pending[dest].append(data)
            return
        self._pending[dest] = [data]
        task = asyncio.get_running_loop().create_task(self._connect(dest))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, dest: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: _TcpConnection(self, dest), dest.host, dest.port),
                TCP_CONNECT_TIMEOUT_S,
            )
        except (OSError, TimeoutError) as exc:
            log.info("cannot connect to %s: %s", dest, exc)
            self._pending.pop(dest, None)
            return
        conn = self._connections.get(dest)
        for data in self._pending.pop(dest, []):
            if conn is not None:
                conn.write(data)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for conn in list(self._connections.values()):
            conn.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


__all__ = ["MAX_MESSAGE_BYTES", "TcpTransport", "UdpTransport"]
