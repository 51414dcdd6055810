"""`callplane serve`: the asyncio shell around the pure SIP core and the PBX's call logic.

It owns every piece of I/O: the UDP and TCP sockets, the clock and timers, the store (written
from one background thread so the event loop never waits on a disk). Bytes become parsed
messages and go through flood control and the transaction layer; actions come back as bytes,
timers and store writes. A malformed message gets a 400 naming its fault when a response can be
formed, and is dropped otherwise; nothing a peer sends stops the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from callplane.core.flood import FloodGuard
from callplane.core.sip.address import Address
from callplane.core.sip.dialog import new_branch, new_tag
from callplane.core.sip.digest import ALGORITHMS
from callplane.core.sip.errors import LocalProtocolError, SipParseError
from callplane.core.sip.message import (
    MAX_MESSAGE_BYTES,
    Message,
    Request,
    Response,
    StreamMessageError,
    make_error_response,
    parse,
)
from callplane.core.sip.transaction import (
    Action,
    CancelTimer,
    RequestReceived,
    ResponseReceived,
    Send,
    StartTimer,
    StrayResponse,
    TimerKey,
    TransactionLayer,
    TransactionTimedOut,
    TxKey,
)
from callplane.pbx.auth import Authenticator
from callplane.pbx.registrar import DeleteBinding, Registrar, SaveBinding, StoreOp
from callplane.pbx.rtp_relay import PORT_RANGE, PortAllocator, RtpBridge
from callplane.pbx.service import Pbx
from callplane.pbx.transport import TcpTransport, UdpTransport
from callplane.store import repository as repo
from callplane.store.db import Store
from callplane.store.errors import StoreError
from callplane.store.records import CdrRec

log = logging.getLogger("callplane.server")

NONCE_KEY_FILE = "digest-nonce.key"  # kept so nonces issued before a restart stay verifiable
NONCE_KEY_BYTES = 32  # HMAC-SHA-256 key size
REGISTRATION_PURGE_S = 300.0  # how often expired bindings are removed from the store
UNSPECIFIED_HOSTS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Everything `callplane serve` is told on its command line."""

    data_dir: Path
    db_url: str | None = None
    sip_host: str = "0.0.0.0"
    sip_port: int = 5060
    demo: bool = True
    flood_max_requests: int = 16
    flood_window_s: float = 2.0
    flood_block_s: float = 60.0
    nonce_ttl_s: float = 300.0
    digest_algorithms: tuple[str, ...] = ALGORITHMS
    log_level: str = "INFO"
    media: bool = True
    rtp_ports: tuple[int, int] = PORT_RANGE


@dataclass(frozen=True, slots=True)
class PurgeRegistrations:
    """Store action: delete the bindings expired at `now`."""

    now: float


WriterItem = StoreOp | CdrRec | PurgeRegistrations
MAX_WRITE_BATCH = 500  # rows per commit under load: one fsync for many CDRs, bounded latency


class StoreWriter:
    """One thread that applies store writes in order, so the event loop never blocks on disk.

    Under load it commits what has queued up in one transaction (one fsync for many rows); if a
    batch fails, its items are retried one by one so a single bad row loses nothing else.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: queue.Queue[WriterItem | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, item: WriterItem) -> None:
        self._queue.put(item)

    def stop(self) -> None:
        """Write everything queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        running = True
        while running:
            batch: list[WriterItem] = []
            item = self._queue.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= MAX_WRITE_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            running = item is not None
            self._write(batch)

    def _write(self, batch: list[WriterItem]) -> None:
        if not batch:
            return
        try:
            with self._store.transaction() as session:
                repo.write_cdrs(session, [i for i in batch if isinstance(i, CdrRec)])
                for item in batch:
                    _apply(session, item)
        except (SQLAlchemyError, StoreError):
            if len(batch) == 1:
                log.exception("store write failed for %r", batch[0])
                return
            for item in batch:
                self._write([item])


def _apply(session: Session, item: WriterItem) -> None:
    """One registration write (CDRs go in bulk, before)."""
    if isinstance(item, SaveBinding):
        repo.save_registration(session, item.record)
    elif isinstance(item, DeleteBinding):
        if item.contact is None:
            repo.delete_registrations(session, item.extension_id)
        else:
            repo.delete_registration(session, item.extension_id, item.contact)
    elif isinstance(item, PurgeRegistrations):
        repo.purge_registrations(session, item.now)


class SipServer:
    """The running PBX: implements `callplane.pbx.endpoint.Endpoint` over asyncio."""

    def __init__(self, options: ServeOptions, store: Store) -> None:
        self.options = options
        self.store = store
        self.writer = StoreWriter(store)
        self.layer = TransactionLayer()
        self.guard = FloodGuard(
            max_requests=options.flood_max_requests,
            window_s=options.flood_window_s,
            block_s=options.flood_block_s,
        )
        self.udp = UdpTransport(options.sip_host, options.sip_port, self._on_datagram)
        self.tcp = TcpTransport(options.sip_host, options.sip_port, self._on_stream_message)
        directory = store.load_directory()
        authenticator = Authenticator(
            directory,
            _nonce_key(options.data_dir),
            nonce_ttl_s=options.nonce_ttl_s,
            algorithms=options.digest_algorithms,
        )
        registrar = Registrar()
        registrar.restore(store.load_registrations(time.time()), time.time())
        self.pbx = Pbx(self, directory, registrar, authenticator, self.writer.put)
        for host in self.pbx.trusted_hosts():
            self.guard.trust(host)
        self.rtp = PortAllocator(options.sip_host or "0.0.0.0", options.rtp_ports)
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._local_hosts: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = asyncio.Event()
        self.dropped = 0

    # --- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.writer.start()
        await self.udp.start()
        self.tcp.port = self.udp.port
        await self.tcp.start()
        self.pbx.start(time.time())
        self._schedule_purge()
        log.info("listening for SIP on udp+tcp %s:%d", self.options.sip_host, self.udp.port)

    async def stop(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self.udp.stop()
        await self.tcp.stop()
        await self.rtp.stop()
        self.writer.stop()
        self._stopped.set()

    def reload(self) -> None:
        """Re-read tenants, extensions, trunks and DIDs (SIGHUP); calls in progress go on."""
        directory = self.store.load_directory()
        self.pbx.load(directory)
        self.pbx.trunks.load(directory.trunks, time.time())
        for host in self.pbx.trusted_hosts():
            self.guard.trust(host)
        log.info("directory reloaded: %d extension(s)", len(directory.extensions))

    def _schedule_purge(self) -> None:
        def purge() -> None:
            self.writer.put(PurgeRegistrations(time.time()))
            self._schedule_purge()

        assert self._loop is not None
        self._timers["purge"] = self._loop.call_later(REGISTRATION_PURGE_S, purge)

    # --- bytes in ------------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, source: Address) -> None:
        now = time.time()
        if not self.guard.allow(source.host, now):
            self.dropped += 1
            return
        if len(data) > MAX_MESSAGE_BYTES:
            return
        try:
            message = parse(data)
        except SipParseError as exc:
            self._reject(data, exc, source)
            return
        self._receive(message, source, now)

    def _on_stream_message(self, item: Message | SipParseError, source: Address) -> None:
        now = time.time()
        if not self.guard.allow(source.host, now):
            self.dropped += 1
            return
        if isinstance(item, StreamMessageError):
            self._reject(item.data, item, source)
        elif isinstance(item, SipParseError):
            log.info("closing stream from %s: %s", source, item.reason)
        else:
            self._receive(item, source, now)

    def _reject(self, data: bytes, error: SipParseError, source: Address) -> None:
        log.info("bad message from %s: %s", source, error.reason)
        answer = make_error_response(data, error, to_tag=new_tag())
        if answer is not None:
            self._send_bytes(bytes(answer), source)

    def _receive(self, message: Message, source: Address, now: float) -> None:
        try:
            actions = self.layer.receive(message, source, now)
        except SipParseError as exc:
            if isinstance(message, Request):
                self._reject(bytes(message), exc, source)
            return
        self._run(actions, now)

    # --- actions out ---------------------------------------------------------------------------

    def _run(self, actions: list[Action], now: float) -> None:
        pbx = self.pbx
        for action in actions:
            if isinstance(action, Send):
                self._send_bytes(bytes(action.message), action.dest)
            elif isinstance(action, StartTimer):
                self._arm(action.key, action.at, now)
            elif isinstance(action, CancelTimer):
                handle = self._timers.pop(action.key, None)
                if handle is not None:
                    handle.cancel()
            elif isinstance(action, RequestReceived):
                pbx.on_request(action.tx, action.request, action.source, now)
            elif isinstance(action, ResponseReceived):
                pbx.on_response(action.tx, action.response, now)
            elif isinstance(action, TransactionTimedOut):
                pbx.on_timeout(action.tx, action.status, now)
            elif isinstance(action, StrayResponse):
                pbx.on_stray_response(action.response, now)

    def _send_bytes(self, data: bytes, dest: Address) -> None:
        if dest.transport == "UDP":
            self.udp.send(data, dest)
        else:
            self.tcp.send(data, dest)

    def _arm(self, key: Hashable, at: float, now: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        assert self._loop is not None
        self._timers[key] = self._loop.call_later(max(at - now, 0.0), self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        now = time.time()
        if isinstance(key, TimerKey):
            self._run(self.layer.timer_fired(key, now), now)
        elif isinstance(key, tuple) and len(key) == 2 and key[0] == "tu":
            self.pbx.timer_fired(key[1], now)

    # --- the Endpoint interface ----------------------------------------------------------------

    def send_request(self, request: Request, dest: Address) -> TxKey:
        now = time.time()
        key, actions = self.layer.send_request(request, dest, now)
        self._run(actions, now)
        return key

    def send_response(self, tx: TxKey, response: Response) -> None:
        now = time.time()
        try:
            actions = self.layer.send_response(tx, response, now)
        except LocalProtocolError as exc:
            log.debug("response %d not sent: %s", response.status, exc)
            return
        self._run(actions, now)

    def send_ack(self, ack: Request, dest: Address) -> None:
        self._run(self.layer.send_ack(ack, dest), time.time())

    def via(self, transport: str, dest: Address) -> str:
        host = _uri_host(self.local_host(dest))
        return f"SIP/2.0/{transport} {host}:{self.udp.port};branch={new_branch()};rport"

    def contact(self, transport: str, dest: Address, user: str = "callplane") -> str:
        host = _uri_host(self.local_host(dest))
        params = ";transport=tcp" if transport == "TCP" else ""
        prefix = f"{user}@" if user else ""
        return f"<sip:{prefix}{host}:{self.udp.port}{params}>"

    def start_timer(self, key: Hashable, at: float) -> None:
        self._arm(("tu", key), at, time.time())

    def cancel_timer(self, key: Hashable) -> None:
        handle = self._timers.pop(("tu", key), None)
        if handle is not None:
            handle.cancel()

    def write_cdr(self, cdr: CdrRec) -> None:
        self.writer.put(cdr)

    def open_media(self) -> RtpBridge | None:
        if not self.options.media:
            return None
        try:
            return self.rtp.bridge_now()
        except OSError as exc:
            log.warning("media not anchored: %s", exc)
            return None

    def local_host(self, dest: Address) -> str:
        """Our address as `dest` sees it: the bound one, else the one the kernel routes from."""
        if self.options.sip_host not in UNSPECIFIED_HOSTS:
            return self.options.sip_host
        found = self._local_hosts.get(dest.host)
        if found is None:
            family = socket.AF_INET6 if ":" in dest.host else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as probe:
                    probe.connect((dest.host, dest.port or 5060))
                    found = str(probe.getsockname()[0])
            except OSError:
                found = "127.0.0.1"
            self._local_hosts[dest.host] = found
        return found


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _nonce_key(data_dir: Path) -> bytes:
    path = data_dir / NONCE_KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) == NONCE_KEY_BYTES:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(NONCE_KEY_BYTES)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


async def serve(options: ServeOptions) -> None:
    """Run until SIGINT or SIGTERM; SIGHUP reloads the directory."""
    store = Store.for_data_dir(options.data_dir, options.db_url)
    store.migrate()
    if options.demo:
        from callplane.store.demo import ensure_demo

        accounts = ensure_demo(store)
        print("Demo tenant 'demo' — register a phone to this server with:", flush=True)
        for number, password in accounts:
            print(f"  extension {number}  password {password}", flush=True)
    server = SipServer(options, store)
    await server.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, done.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    print(f"callplane: SIP on udp+tcp {options.sip_host}:{server.udp.port}", flush=True)
    await done.wait()
    log.info("stopping")
    await server.stop()
    store.close()


def run_server(options: ServeOptions) -> None:
    """Blocking entry point of `callplane serve`."""
    logging.basicConfig(
        level=getattr(logging, options.log_level, logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop
    except ImportError:  # uvloop is optional on platforms without it
        asyncio.run(serve(options))
    else:
        uvloop.run(serve(options))
