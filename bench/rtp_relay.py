"""Concurrent G.711 calls one core can relay: Callplane's RTP relay against rtpengine, same run.

Each call's two phones are played by a load generator (bench/_rtp_load.py) pinned to core 1; the
relay runs pinned to core 0. Every 20 ms each phone sends one 172-byte RTP packet, so a call is
100 packets a second through the relay. The number of calls N steps up (a ramp, then bisecting
between the last N held and the first that failed); N is *held* when less than 0.1% of the
packets of a STEP_S step are lost or late (more than 20 ms of added one-way delay). The figure
for each relay is the largest N held; the ratio callplane/rtpengine is printed last.

    python bench/rtp_relay.py            # 10 s steps, about 8 minutes
    python bench/rtp_relay.py --quick    # 3 s steps, about 2 minutes (smoke run)

Callplane's relay is `callplane.pbx.rtp_relay.PortAllocator(...).bridge(...)` on uvloop, as the
server runs it, in a child started from this file (`--serve-relay`) with a line-based control
channel on TCP. rtpengine (Debian package `rtpengine`) forwards in userspace (`--table=-1`) and is
driven with its ng protocol; when it is not installed only Callplane's figure is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _children import spawn, stop, stop_all, stop_children_on_exit

REPO_ROOT = Path(__file__).resolve().parent.parent
LOAD_GENERATOR = Path(__file__).resolve().parent / "_rtp_load.py"
HOST = "127.0.0.1"
RELAY_CPU = 0  # the relay under test gets core 0 to itself
GENERATOR_CPU = 1  # the load generator gets the other core
PAYLOAD_TYPES = (0, 8)  # G.711 µ-law and A-law, as the PBX negotiates them
RAMP = (50, 100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1600, 2000)  # calls per step
RESOLUTION_CALLS = 10  # bisect no finer than this many calls
BISECT_STEPS_FULL = 3
BISECT_STEPS_QUICK = 1
STEP_S_FULL = 10.0
STEP_S_QUICK = 3.0
BUDGET_S_FULL = 170  # per relay, checked before each step: both fit in about 8 minutes
BUDGET_S_QUICK = 55  # per relay: both fit in about 2 minutes
HELD_FRACTION = 0.001  # the definition: < 0.1% of packets lost or late
GENERATOR_SATURATED = 0.9  # above this share of its core, the generator may be what failed
READY_TIMEOUT_S = 15.0
SETUP_TIMEOUT_S = 60.0  # creating 2,000 bridges or rtpengine calls takes a few seconds
SETTLE_S = 0.5  # between steps, so the previous relay's sockets are gone
RETRIES = 1  # a failed step is run again once: other work on a shared machine can spoil one


class BenchError(Exception):
    """A relay or the load generator could not be set up; the message says which and why."""


# --- the relay child: Callplane's relay with a line-based control channel ----------------------


async def serve_relay() -> None:
    """`bridge N` -> N lines `a_port b_port`; `expect I a|b HOST PORT` -> ok; `stats` -> JSON."""
    sys.path.insert(0, str(REPO_ROOT))
    from callplane.pbx.rtp_relay import PortAllocator, RtpBridge, RtpPort

    allocator = PortAllocator(HOST)
    bridges: list[RtpBridge] = []

    def answer(words: list[bytes]) -> bytes:
        match words:
            case [b"expect", index, side, host, port]:
                bridge = bridges[int(index)]
                leg: RtpPort = bridge.a if side == b"a" else bridge.b
                leg.expect(host.decode(), int(port))
                return b"ok\n"
            case [b"stats"]:
                totals: dict[str, int] = {}
                for bridge in bridges:
                    for leg in (bridge.a, bridge.b):
                        for name in leg.counters.__slots__:
                            totals[name] = totals.get(name, 0) + getattr(leg.counters, name)
                return json.dumps(totals).encode() + b"\n"
            case _:
                return b"error unknown command %r\n" % b" ".join(words)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            words = line.split()
            if words[:1] == [b"bridge"] and len(words) == 2:
                for _ in range(int(words[1])):
                    bridge = await allocator.bridge(PAYLOAD_TYPES)
                    bridges.append(bridge)
                    writer.write(b"%d %d\n" % (bridge.a_port, bridge.b_port))
            else:
                writer.write(answer(words))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    await server.serve_forever()


def run_relay_child() -> int:
    import uvloop

    os.sched_setaffinity(0, {RELAY_CPU})
    uvloop.run(serve_relay())
    return 0


# --- children ------------------------------------------------------------------------------------


def _pin_to_relay_cpu() -> None:
    os.sched_setaffinity(0, {RELAY_CPU})


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((HOST, 0))
        return int(udp.getsockname()[1])


# --- the two relays ------------------------------------------------------------------------------


@contextlib.contextmanager
def callplane_relay(work: Path) -> Iterator[tuple[int, int]]:
    """A fresh Callplane relay on core 0; yields (control port, pid)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve-relay"]
    proc = spawn(argv, work / "callplane.log", stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()  # the child prints one line, then nothing
        if line[:1] != [b"ready"]:
            raise BenchError(f"Callplane relay did not start; see {work / 'callplane.log'}")
        yield int(line[1]), proc.pid
    finally:
        stop(proc)


def ng_pong(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        try:
            sock.sendto(b"ready d7:command4:pinge", (HOST, port))
            return b"pong" in sock.recv(1024)
        except OSError:
            return False


@contextlib.contextmanager
def rtpengine_relay(work: Path) -> Iterator[tuple[int, int]]:
    """A fresh rtpengine on core 0, userspace forwarding; yields (ng port, pid)."""
    port = free_udp_port()
    argv = [
        "rtpengine",
        f"--interface={HOST}",
        f"--listen-ng={HOST}:{port}",
        "--foreground",
        "--table=-1",  # no kernel forwarding: userspace, like Callplane
        "--log-stderr",
    ]
    proc = spawn(argv, work / "rtpengine.log", preexec_fn=_pin_to_relay_cpu)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ng_pong(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"rtpengine did not start; see {work / 'rtpengine.log'}")
        yield port, proc.pid
    finally:
        stop(proc)


# --- steps and the search ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    calls: int
    result: dict[str, Any]

    @property
    def bad_fraction(self) -> float:
        sent = int(self.result["sent"]) + int(self.result["send_errors"])
        return (int(self.result["lost"]) + int(self.result["late"])) / max(sent, 1)

    @property
    def held(self) -> bool:
        return self.bad_fraction < HELD_FRACTION

    @property
    def generator_saturated(self) -> bool:
        return float(self.result["generator_cpu"]) > GENERATOR_SATURATED

    def describe(self, name: str) -> str:
        r = self.result
        relay_cpu = "?" if r["relay_cpu"] is None else f"{100 * r['relay_cpu']:.0f}%"
        verdict = "held" if self.held else "FAILED"
        note = " (load generator saturated)" if self.generator_saturated else ""
        return (
            f"{name} {self.calls} calls: sent {r['sent']} lost {r['lost']} late {r['late']}"
            f" ({100 * self.bad_fraction:.3f}%), delay p50 {r['delay_p50_ms']:.0f} ms"
            f" p99 {r['delay_p99_ms']:.0f} ms max {r['delay_max_ms']:.0f} ms;"
            f" cpu relay {relay_cpu} generator {100 * r['generator_cpu']:.0f}%,"
            f" cores busy {'/'.join(f'{100 * busy:.0f}%' for busy in r['core_busy'])}"
            f" -> {verdict}{note}"
        )


class Bench:
    def __init__(self, work: Path, step_s: float, bisect_steps: int, budget_s: float) -> None:
        self.work = work
        self.step_s = step_s
        self.bisect_steps = bisect_steps
        self.budget_s = budget_s
        self.generator_cpu_max = 0.0

    def step(
        self,
        name: str,
        relay: Callable[[Path], contextlib.AbstractContextManager[tuple[int, int]]],
        calls: int,
    ) -> Step:
        """Run N calls through a fresh relay; a failed step gets RETRIES more tries."""
        result = self.step_once(name, relay, calls)
        for _ in range(RETRIES):
            if result.held:
                break
            print(f"{name} {calls} calls: trying once more", file=sys.stderr, flush=True)
            result = self.step_once(name, relay, calls)
        return result

    def step_once(
        self,
        name: str,
        relay: Callable[[Path], contextlib.AbstractContextManager[tuple[int, int]]],
        calls: int,
    ) -> Step:
        with relay(self.work) as (control, pid):
            argv = [
                sys.executable,
                str(LOAD_GENERATOR),
                f"--target={name}",
                f"--control={control}",
                f"--calls={calls}",
                f"--duration-s={self.step_s}",
                f"--relay-pid={pid}",
                f"--cpu={GENERATOR_CPU}",
            ]
            proc = spawn(argv, self.work / "load.log", stdout=subprocess.PIPE)
            try:
                out, _ = proc.communicate(timeout=self.step_s + SETUP_TIMEOUT_S)
            except subprocess.TimeoutExpired as exc:
                raise BenchError(f"load generator timed out at {calls} calls") from exc
            finally:
                stop(proc)
            if proc.returncode != 0:
                raise BenchError(f"load generator failed; see {self.work / 'load.log'}")
        time.sleep(SETTLE_S)
        step = Step(calls, json.loads(out))
        self.generator_cpu_max = max(self.generator_cpu_max, float(step.result["generator_cpu"]))
        print(step.describe(name), file=sys.stderr, flush=True)
        return step

    def search(self, name: str, step: Callable[[int], Step]) -> tuple[int, Step | None]:
        """Largest N held, and the first step that failed (None if the ramp never failed)."""
        started = time.monotonic()
        best, failed = 0, None
        for calls in RAMP:
            if time.monotonic() - started > self.budget_s:
                print(f"{name}: time budget spent during the ramp", file=sys.stderr)
                return best, failed
            result = step(calls)
            if not result.held:
                failed = result
                break
            best = calls
        for _ in range(self.bisect_steps):
            if failed is None or failed.calls - best <= RESOLUTION_CALLS:
                break
            if time.monotonic() - started > self.budget_s:
                break
            middle = (best + failed.calls) // 2 // RESOLUTION_CALLS * RESOLUTION_CALLS
            result = step(middle)
            if result.held:
                best = middle
            else:
                failed = result
        return best, failed


def measure(
    bench: Bench,
    name: str,
    relay: Callable[[Path], contextlib.AbstractContextManager[tuple[int, int]]],
) -> int:
    try:
        best, failed = bench.search(name, lambda calls: bench.step(name, relay, calls))
    except (BenchError, OSError, subprocess.SubprocessError, ValueError) as exc:
        print(f"{name}: not measured: {exc}", file=sys.stderr, flush=True)
        return 0
    if failed is not None and failed.generator_saturated:
        print(
            f"note: the load generator saturated its core when {name} failed at"
            f" {failed.calls} calls; {best} is a lower bound",
            file=sys.stderr,
            flush=True,
        )
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 s steps, about 2 minutes")
    parser.add_argument("--only", choices=["callplane", "rtpengine"], help="measure one relay")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument("--serve-relay", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_relay:
        return run_relay_child()
    if len(os.sched_getaffinity(0)) < 2:
        print("needs two cores: one for the relay, one for the load generator", file=sys.stderr)
        return 2
    stop_children_on_exit()
    work = Path(tempfile.mkdtemp(prefix="rtp-relay-"))
    if args.quick:
        bench = Bench(work, STEP_S_QUICK, BISECT_STEPS_QUICK, BUDGET_S_QUICK)
    else:
        bench = Bench(work, STEP_S_FULL, BISECT_STEPS_FULL, BUDGET_S_FULL)
    figures: dict[str, int] = {}
    try:
        if args.only in (None, "callplane"):
            figures["callplane"] = measure(bench, "callplane", callplane_relay)
            print(f"callplane_calls_per_core: {figures['callplane']}", flush=True)
        if args.only in (None, "rtpengine"):
            if shutil.which("rtpengine") is None:
                print("rtpengine not installed, skipping reference", flush=True)
            else:
                figures["rtpengine"] = measure(bench, "rtpengine", rtpengine_relay)
                print(f"rtpengine_calls_per_core: {figures['rtpengine']}", flush=True)
    finally:
        stop_all()
        if args.keep:
            print(f"work dir kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"load generator: at most {100 * bench.generator_cpu_max:.0f}% of core {GENERATOR_CPU}",
        file=sys.stderr,
    )
    if len(figures) == 2:
        ratio = figures["callplane"] / figures["rtpengine"] if figures["rtpengine"] else 0.0
        print(f"callplane/rtpengine: {ratio:.2f}", flush=True)
    return 0 if figures and all(figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
