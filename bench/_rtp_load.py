"""Load generator for bench/rtp_relay.py: plays both phones of N G.711 calls through an RTP relay.

Every PTIME_MS each side of each call sends one 172-byte RTP packet (12-byte header, 160 bytes of
µ-law, the send time in CLOCK_MONOTONIC nanoseconds in the first 8 payload bytes) and receives the
other side's packets. A packet is *lost* when it has not arrived DRAIN_S after the last send, and
*late* when its one-way delay (receive time minus the send time it carries) exceeds LATE_NS.

The generator is kept light so that it is not the bottleneck: a few sockets per call side shared
by all calls (SOCKETS_PER_SIDE), plain non-blocking sockets driven by `loop.add_reader` and sent
to in batches (the calls are spread over PHASES batches per 20 ms), no per-packet allocation
beyond what `sendto` needs. It reports its own CPU use so the caller can tell when it saturates.

    python bench/_rtp_load.py --target callplane --control PORT --calls N --duration-s S
    python bench/_rtp_load.py --target rtpengine --control NG_PORT --calls N --duration-s S
    python bench/_rtp_load.py --target direct --calls N --duration-s S   # no relay: our ceiling

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import secrets
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import uvloop

HOST = "127.0.0.1"
PTIME_MS = 20  # G.711 at 8 kHz, the usual packetization: 160 samples a packet
PTIME_NS = PTIME_MS * 1_000_000
SAMPLES_PER_PACKET = 160
PACKET_BYTES = 172  # RFC 3550 §5.1 fixed header (12) + 20 ms of G.711 (160)
PAYLOAD_TYPE_PCMU = 0  # RFC 3551 §6: static payload type of G.711 µ-law
MULAW_SILENCE = 0xFF
HEADER = struct.Struct("!BBHIIq")  # V/P/X/CC, M/PT, seq, timestamp, SSRC, then the send time
LATE_NS = 20_000_000  # the definition: more than 20 ms of added delay
PHASES = 4  # batches per PTIME_MS: calls are spread over 0, 5, 10, 15 ms like real phones
SOCKETS_PER_SIDE = 8  # all callers share these, all callees share as many others
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024  # a stall of the generator must not drop what arrived
DRAIN_S = 0.5  # after the last send, how long a packet may still arrive (then it is lost)
START_DELAY_NS = 100_000_000  # first send this long after the traffic is set up
HISTOGRAM_MS = 1000  # delays are binned per millisecond up to this, the rest in the last bin
CONTROL_TIMEOUT_S = 10.0
NG_COOKIE_BYTES = 8


class LoadError(Exception):
    """The relay could not be set up for the calls; the message says which step failed."""


# --- bencode (BEP 3), as rtpengine's ng protocol speaks it -------------------------------------

Bencodable = int | str | bytes | list["Bencodable"] | dict[str, "Bencodable"]


def bencode(value: Bencodable) -> bytes:
    """Encode ints, strings (UTF-8), bytes, lists and dicts with sorted keys."""
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(item) for item in value) + b"e"
    items = sorted(value.items())
    return b"d" + b"".join(bencode(key) + bencode(item) for key, item in items) + b"e"


def bdecode(data: bytes) -> Bencodable:
    """Decode one bencoded value (strings stay bytes, dict keys become str); ValueError if bad."""
    value, end = _bdecode_at(data, 0)
    if end != len(data):
        raise ValueError(f"bencode: {len(data) - end} trailing bytes")
    return value


def _bdecode_at(data: bytes, at: int) -> tuple[Bencodable, int]:
    if at >= len(data):
        raise ValueError("bencode: truncated")
    kind = data[at : at + 1]
    if kind == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1 : end]), end + 1
    if kind == b"l":
        items: list[Bencodable] = []
        at += 1
        while data[at : at + 1] != b"e":
            item, at = _bdecode_at(data, at)
            items.append(item)
        return items, at + 1
    if kind == b"d":
        entries: dict[str, Bencodable] = {}
        at += 1
        while data[at : at + 1] != b"e":
            key, at = _bdecode_at(data, at)
            if not isinstance(key, bytes):
                raise ValueError("bencode: dictionary key is not a string")
            entries[key.decode()], at = _bdecode_at(data, at)
        return entries, at + 1
    if kind.isdigit():
        colon = data.index(b":", at)
        start = colon + 1
        end = start + int(data[at:colon])
        if end > len(data):
            raise ValueError("bencode: truncated string")
        return data[start:end], end
    raise ValueError(f"bencode: unexpected byte {kind!r} at {at}")


class NgClient:
    """rtpengine's control protocol: a cookie, a space, a bencoded dictionary, over UDP."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(CONTROL_TIMEOUT_S)
        self.sock.connect((HOST, port))

    def request(self, message: dict[str, Bencodable]) -> dict[str, Bencodable]:
        cookie = secrets.token_hex(NG_COOKIE_BYTES // 2).encode()
        self.sock.send(cookie + b" " + bencode(message))
        while True:
            reply = self.sock.recv(65_535)
            got_cookie, _, body = reply.partition(b" ")
            if got_cookie == cookie:
                break
        answer = bdecode(body)
        if not isinstance(answer, dict):
            raise LoadError(f"rtpengine: reply is not a dictionary: {body[:80]!r}")
        if answer.get("result") not in (b"ok", b"pong"):
            raise LoadError(f"rtpengine {message['command']!s}: {answer!r}")
        return answer


def sdp(port: int, session: int) -> str:
    """A phone's offer or answer: G.711 µ-law only, on 127.0.0.1:port (RFC 4566)."""
    return (
        "v=0\r\n"
        f"o=- {session} 1 IN IP4 {HOST}\r\n"
        "s=bench\r\n"
        f"c=IN IP4 {HOST}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP {PAYLOAD_TYPE_PCMU}\r\n"
        f"a=rtpmap:{PAYLOAD_TYPE_PCMU} PCMU/8000\r\n"
        f"a=ptime:{PTIME_MS}\r\n"
        "a=sendrecv\r\n"
    )


SDP_MEDIA = re.compile(rb"^m=audio (\d+) ", re.MULTILINE)
SDP_CONNECTION = re.compile(rb"^c=IN IP4 (\S+)", re.MULTILINE)


def sdp_address(body: Bencodable | None) -> tuple[str, int]:
    if not isinstance(body, bytes):
        raise LoadError("rtpengine: reply has no sdp")
    media, connection = SDP_MEDIA.search(body), SDP_CONNECTION.search(body)
    if media is None or connection is None:
        raise LoadError(f"rtpengine: no audio address in its SDP: {body[:200]!r}")
    return connection.group(1).decode(), int(media.group(1))


# --- setting the calls up ------------------------------------------------------------------------

Address = tuple[str, int]
SendTo = Callable[[bytearray, Address], int]


def callplane_calls(
    control_port: int, callers: list[Address], callees: list[Address]
) -> list[tuple[Address, Address]]:
    """Ask bench/rtp_relay.py's relay for one bridge per call; return where each side sends."""
    with socket.create_connection((HOST, control_port), timeout=CONTROL_TIMEOUT_S) as conn:
        stream = conn.makefile("rwb")
        stream.write(b"bridge %d\n" % len(callers))
        stream.flush()
        ports = [stream.readline().split() for _ in callers]
        for index, (caller, callee) in enumerate(zip(callers, callees, strict=True)):
            stream.write(b"expect %d a %s %d\n" % (index, caller[0].encode(), caller[1]))
            stream.write(b"expect %d b %s %d\n" % (index, callee[0].encode(), callee[1]))
        stream.flush()
        replies = [stream.readline().strip() for _ in range(2 * len(callers))]
    if any(len(pair) != 2 for pair in ports) or any(reply != b"ok" for reply in replies):
        raise LoadError(f"relay control: unexpected reply {ports[:1]!r} {replies[:1]!r}")
    return [((HOST, int(a)), (HOST, int(b))) for a, b in ports]


def rtpengine_calls(
    ng_port: int, callers: list[Address], callees: list[Address]
) -> list[tuple[Address, Address]]:
    """One rtpengine call per pair: offer with the caller's SDP, answer with the callee's."""
    ng = NgClient(ng_port)
    ng.request({"command": "ping"})
    run = secrets.token_hex(4)
    destinations: list[tuple[Address, Address]] = []
    for index, (caller, callee) in enumerate(zip(callers, callees, strict=True)):
        call_id = f"bench-{run}-{index}"
        offer = ng.request(
            {
                "command": "offer",
                "call-id": call_id,
                "from-tag": f"caller-{index}",
                "sdp": sdp(caller[1], 2 * index + 1),
            }
        )
        answer = ng.request(
            {
                "command": "answer",
                "call-id": call_id,
                "from-tag": f"caller-{index}",
                "to-tag": f"callee-{index}",
                "sdp": sdp(callee[1], 2 * index + 2),
            }
        )
        # The offer's SDP goes to the callee (where it sends), the answer's to the caller.
        destinations.append((sdp_address(answer.get("sdp")), sdp_address(offer.get("sdp"))))
    ng.sock.close()
    return destinations


# --- the traffic ---------------------------------------------------------------------------------


@dataclass
class Result:
    """What one run saw; every count is packets."""

    calls: int
    duration_s: float
    sent: int = 0
    received: int = 0
    lost: int = 0
    late: int = 0
    stray: int = 0
    send_errors: int = 0
    delay_p50_ms: float = 0.0
    delay_p99_ms: float = 0.0
    delay_max_ms: float = 0.0
    send_lag_max_ms: float = 0.0
    generator_cpu: float = 0.0
    relay_cpu: float | None = None
    core_busy: list[float] = field(default_factory=list)
    core_steal: list[float] = field(default_factory=list)
    relay_counters: dict[str, int] = field(default_factory=dict)


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads (proc(5): utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_times() -> list[tuple[int, int, int]]:
    """(busy, steal, total) jiffies per core from /proc/stat, softirq included (proc(5))."""
    cores = []
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, values[:8])
            busy = user + nice + system + irq + softirq
            cores.append((busy, steal, busy + idle + iowait + steal))
    return cores


class Phones:
    """Both phones of every call: sends on schedule, receives and checks what comes back."""

    def __init__(self, calls: int, sockets_per_side: int) -> None:
        self.calls = calls
        self.caller_socks = [bound_socket() for _ in range(sockets_per_side)]
        self.callee_socks = [bound_socket() for _ in range(sockets_per_side)]
        self.callers = [
            self._address(self.caller_socks[i % sockets_per_side]) for i in range(calls)
        ]
        self.callees = [
            self._address(self.callee_socks[i % sockets_per_side]) for i in range(calls)
        ]
        self.received = [0] * (2 * calls)
        self.histogram = [0] * (HISTOGRAM_MS + 1)
        self.late = 0
        self.stray = 0
        self._rx = bytearray(2048)

    @staticmethod
    def _address(sock: socket.socket) -> Address:
        host, port = sock.getsockname()
        return str(host), int(port)

    def _drain(self, sock: socket.socket) -> None:
        recv_into, rx, unpack_from = sock.recv_into, self._rx, HEADER.unpack_from
        received, histogram, streams = self.received, self.histogram, len(self.received)
        clock = time.monotonic_ns
        while True:
            try:
                size = recv_into(rx)
            except BlockingIOError:
                return
            now_ns = clock()
            ssrc, sent_ns = unpack_from(rx)[4:]
            if size != PACKET_BYTES or ssrc >= streams:
                self.stray += 1
                continue
            received[ssrc] += 1
            delay_ns = now_ns - sent_ns
            if delay_ns > LATE_NS:
                self.late += 1
            histogram[min(delay_ns // 1_000_000, HISTOGRAM_MS)] += 1

    async def run(
        self, destinations: list[tuple[Address, Address]], duration_s: float, relay_pid: int | None
    ) -> Result:
        loop = asyncio.get_running_loop()
        result = Result(calls=self.calls, duration_s=duration_s)
        # One batch per phase: (sendto, packet buffer, destination, SSRC) for both sides of a call.
        batches: list[list[tuple[SendTo, bytearray, Address, int]]] = [[] for _ in range(PHASES)]
        sides = len(self.caller_socks)
        for index, (to_caller_port, to_callee_port) in enumerate(destinations):
            for ssrc, sock, destination in (
                (2 * index, self.caller_socks[index % sides], to_caller_port),
                (2 * index + 1, self.callee_socks[index % sides], to_callee_port),
            ):
                packet = bytearray([MULAW_SILENCE]) * PACKET_BYTES
                batches[index % PHASES].append((sock.sendto, packet, destination, ssrc))
        for sock in self.caller_socks + self.callee_socks:
            loop.add_reader(sock.fileno(), self._drain, sock)
        ticks = round(duration_s * 1000 / PTIME_MS)
        clock, pack_into = time.monotonic_ns, HEADER.pack_into
        start_ns = clock() + START_DELAY_NS
        cpu_start_s = time.process_time()
        relay_cpu_start_s = cpu_seconds(relay_pid) if relay_pid else 0.0
        cores_start = core_times()
        sent = send_errors = lag_max_ns = 0
        for step in range(ticks * PHASES):
            due_ns = start_ns + step * PTIME_NS // PHASES
            wait_ns = due_ns - clock()
            if wait_ns > 0:
                await asyncio.sleep(wait_ns / 1e9)
            lag_max_ns = max(lag_max_ns, clock() - due_ns)
            tick = step // PHASES
            seq, timestamp = tick & 0xFFFF, (tick * SAMPLES_PER_PACKET) & 0xFFFFFFFF
            batch = batches[step % PHASES]
            for sendto, packet, destination, ssrc in batch:
                pack_into(packet, 0, 0x80, PAYLOAD_TYPE_PCMU, seq, timestamp, ssrc, clock())
                try:
                    sendto(packet, destination)
                except BlockingIOError:
                    send_errors += 1
            sent += len(batch)
        wall_s = (clock() - start_ns) / 1e9
        result.generator_cpu = (time.process_time() - cpu_start_s) / wall_s
        for (busy0, steal0, total0), (busy1, steal1, total1) in zip(
            cores_start, core_times(), strict=True
        ):
            result.core_busy.append((busy1 - busy0) / max(total1 - total0, 1))
            result.core_steal.append((steal1 - steal0) / max(total1 - total0, 1))
        if relay_pid:
            result.relay_cpu = (cpu_seconds(relay_pid) - relay_cpu_start_s) / wall_s
        await asyncio.sleep(DRAIN_S)
        for sock in self.caller_socks + self.callee_socks:
            loop.remove_reader(sock.fileno())
            sock.close()
        result.sent = sent - send_errors
        result.send_errors = send_errors
        result.received = sum(self.received)
        result.lost = max(result.sent - result.received, 0)
        result.late = self.late
        result.stray = self.stray
        result.send_lag_max_ms = lag_max_ns / 1e6
        result.delay_p50_ms, result.delay_p99_ms, result.delay_max_ms = self._percentiles()
        return result

    def _percentiles(self) -> tuple[float, float, float]:
        total = sum(self.histogram)
        if not total:
            return 0.0, 0.0, 0.0
        marks: list[float] = []
        for fraction in (0.5, 0.99):
            running = 0
            for delay_ms, count in enumerate(self.histogram):
                running += count
                if running >= fraction * total:
                    marks.append(float(delay_ms))
                    break
        highest = max(ms for ms, count in enumerate(self.histogram) if count)
        return marks[0], marks[1], float(highest)


def relay_counters(control_port: int) -> dict[str, int]:
    with socket.create_connection((HOST, control_port), timeout=CONTROL_TIMEOUT_S) as conn:
        stream = conn.makefile("rwb")
        stream.write(b"stats\n")
        stream.flush()
        counters: dict[str, int] = json.loads(stream.readline())
    return counters


async def main_async(args: argparse.Namespace) -> Result:
    phones = Phones(args.calls, args.sockets)
    if args.target == "callplane":
        destinations = callplane_calls(args.control, phones.callers, phones.callees)
    elif args.target == "rtpengine":
        destinations = rtpengine_calls(args.control, phones.callers, phones.callees)
    else:
        destinations = list(zip(phones.callees, phones.callers, strict=True))
    result = await phones.run(destinations, args.duration_s, args.relay_pid)
    if args.target == "callplane":
        result.relay_counters = relay_counters(args.control)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--target", choices=["callplane", "rtpengine", "direct"], required=True)
    parser.add_argument("--control", type=int, default=0, help="relay control or ng port")
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--duration-s", type=float, required=True)
    parser.add_argument("--relay-pid", type=int, help="measure this process's CPU use")
    parser.add_argument("--cpu", type=int, help="pin the generator to this core")
    parser.add_argument("--sockets", type=int, default=SOCKETS_PER_SIDE, help="per call side")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    gc.disable()  # a collection pause would show up as the relay's delay
    try:
        result = uvloop.run(main_async(args))
    except (LoadError, OSError, ValueError) as exc:
        print(f"load generator: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
