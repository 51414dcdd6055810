"""Calls per second through a B2BUA: Callplane against sippy, same SIPp scenarios, same run.

SIPp uac -> B2BUA -> SIPp uas on 127.0.0.1 over UDP. The call rate steps up (doubling, then
bisecting between the last rate held and the first that failed); a rate is *held* when every call of
a step lasting STEP_S seconds succeeds and the step finishes on time. The figure for each B2BUA
is the highest rate held; the ratio callplane/sippy is printed last.

    python bench/sip_cps.py            # 20 s steps, about 12 minutes
    python bench/sip_cps.py --quick    # 5 s steps, about 2 minutes (smoke run)

Callplane's path: the uac is an IP-authenticated trunk whose DID routes to extension 1001, which
the uas registered (digest) before the first step. sippy's path: `b2bua --static_route` to the uas.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _children import spawn, stop, stop_all, stop_children_on_exit
from _sippy_env import sippy_b2bua

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DID = "+33123456789"  # the trunk's DID, routed to extension 1001
EXTENSION = "1001"
EXTENSION_PASSWORD = "pw-1001"
CALLER = "+33611223344"
HOLD_MS = 500  # calls are short: answer, hold half a second, BYE
START_RATE = 20  # calls per second of the first step
MAX_RATE = 2000  # SIPp itself saturates one of the two cores well before this
BISECT_STEPS_FULL = 4  # after the doubling ramp, narrow the bracket this many times
BISECT_STEPS_QUICK = 2
STEP_S_FULL = 20  # the definition: held for 20 s with zero failed calls
STEP_S_QUICK = 5
RECV_TIMEOUT_MS = 5000  # a response later than this counts as a failed call
STEP_SLACK_S = (
    6.0  # a step may overrun its nominal length by this much (hold, last BYE, retransmits)
)
SETTLE_S = 2.0  # pause between steps so the previous step's transactions finish
BUDGET_S_FULL = 330  # per B2BUA: two of them fit in about 12 minutes
BUDGET_S_QUICK = 60  # per B2BUA: two of them fit in about 2 minutes
READY_TIMEOUT_S = 30.0  # how long a B2BUA may take to start answering
SIPP_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024  # SIPp's 64 KiB default drops bursts, for both B2BUAs
CONCURRENCY_FACTOR = 20  # -l: never let SIPp's own call limit throttle the offered rate

SDP = (
    "v=0\r\n"
    "o=bench 53655765 2353687637 IN IP4 [local_ip]\r\n"
    "s=-\r\n"
    "c=IN IP4 [local_ip]\r\n"
    "t=0 0\r\n"
    "m=audio [media_port] RTP/AVP 0 8\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
)

UAC_XML = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="cps-uac">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{CALLER}@[local_ip]:[local_port]>;tag=[pid]bench[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{CALLER}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

{SDP}]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true">
    <action>
      <ereg regexp="sips?:[^>]*" search_in="hdr" header="Contact:" assign_to="contact"/>
    </action>
  </recv>
  <send><![CDATA[
ACK [$contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:{CALLER}@[local_ip]:[local_port]>;tag=[pid]bench[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <!-- the hold; a 180 overtaken by the 200 on UDP (RFC 3261 §18 allows it) only shortens it -->
  <recv response="180" timeout="{HOLD_MS}" ontimeout="hangup"/>
  <label id="hangup"/>
  <send retrans="500"><![CDATA[
BYE [$contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:{CALLER}@[local_ip]:[local_port]>;tag=[pid]bench[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"""

UAS_XML = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="cps-uas">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]uas[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:{EXTENSION}@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]uas[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:{EXTENSION}@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

{SDP}]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"""

REGISTER_XML = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="cps-register">
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{EXTENSION}@[remote_ip]>;tag=[pid]reg[call_number]
To: <sip:{EXTENSION}@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:{EXTENSION}@[local_ip]:[local_port]>
Expires: 3600
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{EXTENSION}@[remote_ip]>;tag=[pid]reg[call_number]
To: <sip:{EXTENSION}@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:{EXTENSION}@[local_ip]:[local_port]>
[authentication username={EXTENSION} password={EXTENSION_PASSWORD}]
Expires: 3600
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"""


class BenchError(RuntimeError):
    """A B2BUA or SIPp could not be set up; the message says which and why."""


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
            return port
    raise BenchError("no free port on 127.0.0.1")


def options_answered(port: int, timeout_s: float = 0.5) -> bool:
    """Send one OPTIONS over UDP; True when any SIP response comes back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(timeout_s)
        local = sock.getsockname()[1]
        tag = os.urandom(4).hex()
        msg = (
            f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{local};branch=z9hG4bK{tag}\r\n"
            f"From: <sip:probe@{HOST}>;tag={tag}\r\nTo: <sip:{HOST}:{port}>\r\n"
            f"Call-ID: probe-{tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(msg.encode(), (HOST, port))
        try:
            data = sock.recv(65_535)
        except TimeoutError:
            return False
        return data.startswith(b"SIP/2.0 ")


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll with OPTIONS until the B2BUA answers; fail fast if it died."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"exited with {proc.returncode}: {log.read_text(errors='replace')}")
        if options_answered(port):
            return
        time.sleep(0.2)
    raise BenchError(f"not answering OPTIONS on {HOST}:{port} after {READY_TIMEOUT_S} s")


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step of offered load: how many calls, how many succeeded, how long it took."""

    rate: int
    calls: int
    successful: int
    failed: int
    wall_s: float
    step_s: int

    @property
    def held(self) -> bool:
        on_time = self.wall_s <= self.step_s + STEP_SLACK_S
        return self.failed == 0 and self.successful == self.calls and on_time


def _read_stats(path: Path) -> tuple[int, int]:
    """Successful and failed call counts from the last line of a SIPp -trace_stat file."""
    if not path.exists():
        return 0, 0
    rows = list(csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    if len(rows) < 2:
        return 0, 0
    header, last = rows[0], rows[-1]
    values = dict(zip(header, last, strict=False))
    return int(values.get("SuccessfulCall(C)", 0)), int(values.get("FailedCall(C)", 0))


class Bench:
    """SIPp scenarios and the stepping logic, shared by both B2BUAs."""

    def __init__(self, work: Path, step_s: int, bisect_steps: int, budget_s: float) -> None:
        self.work = work
        self.step_s = step_s
        self.bisect_steps = bisect_steps
        self.budget_s = budget_s
        self.uac_xml = work / "uac.xml"
        self.uas_xml = work / "uas.xml"
        self.register_xml = work / "register.xml"
        self.uac_xml.write_text(UAC_XML)
        self.uas_xml.write_text(UAS_XML)
        self.register_xml.write_text(REGISTER_XML)
        self._step_no = 0

    def sipp(self, scenario: Path, local_port: int, extra: list[str]) -> list[str]:
        return [
            "sipp",
            "-sf",
            str(scenario),
            "-i",
            HOST,
            "-p",
            str(local_port),
            "-t",
            "u1",
            "-nostdin",
            "-buff_size",
            str(SIPP_SOCKET_BUFFER_BYTES),
            *extra,
        ]

    def start_uas(self, name: str, port: int) -> subprocess.Popen[bytes]:
        argv = self.sipp(self.uas_xml, port, ["-bind_local"])
        return spawn(argv, self.work / f"{name}-uas.log", cwd=self.work)

    def register(self, server_port: int, uas_port: int) -> None:
        """Register extension 1001 with the uas's address as its contact (digest, RFC 3261 §22)."""
        argv = self.sipp(
            self.register_xml,
            uas_port,
            ["-m", "1", "-recv_timeout", "5000", "-timeout", "20s", f"{HOST}:{server_port}"],
        )
        result = subprocess.run(argv, cwd=self.work, capture_output=True, timeout=30, check=False)
        if result.returncode != 0:
            tail = result.stdout[-1500:].decode(errors="replace")
            raise BenchError(f"REGISTER of {EXTENSION} failed (sipp {result.returncode}): {tail}")

    def step(self, name: str, server_port: int, uac_port: int, rate: int) -> StepResult:
        """Offer `rate` calls per second for step_s seconds; count successes and failures."""
        self._step_no += 1
        calls = rate * self.step_s
        stats = self.work / f"{name}-step{self._step_no}.csv"
        limit = max(100, rate * CONCURRENCY_FACTOR)
        timeout_s = self.step_s + STEP_SLACK_S + RECV_TIMEOUT_MS / 1000 + 5
        argv = self.sipp(
            self.uac_xml,
            uac_port,
            [
                "-s",
                DID,
                "-r",
                str(rate),
                "-rp",
                "1000",
                "-m",
                str(calls),
                "-l",
                str(limit),
                "-recv_timeout",
                str(RECV_TIMEOUT_MS),
                "-timeout",
                f"{int(timeout_s)}s",
                "-trace_stat",
                "-trace_err",
                "-stf",
                str(stats),
                "-fd",
                "1",
                f"{HOST}:{server_port}",
            ],
        )
        started = time.monotonic()
        proc = spawn(argv, self.work / f"{name}-step{self._step_no}.log", cwd=self.work)
        try:
            proc.wait(timeout=timeout_s + 10)
        except subprocess.TimeoutExpired:
            stop(proc)
        wall_s = time.monotonic() - started
        stop(proc)  # exited: forget it
        successful, failed = _read_stats(stats)
        result = StepResult(rate, calls, successful, failed, wall_s, self.step_s)
        verdict = "held" if result.held else "failed"
        print(
            f"  {name}: {rate} cps x {self.step_s} s: {successful}/{calls} ok, "
            f"{failed} failed, {wall_s:.1f} s -> {verdict}",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(SETTLE_S)
        return result

    def search(self, name: str, step: Callable[[int], StepResult]) -> int:
        """Double the rate until a step fails, then bisect; return the highest rate held."""
        deadline = time.monotonic() + self.budget_s
        best = 0
        worst: int | None = None
        rate = START_RATE
        while rate <= MAX_RATE and time.monotonic() + self.step_s < deadline:
            if step(rate).held:
                best = rate
                rate *= 2
            else:
                worst = rate
                break
        if worst is None:
            return best
        for _ in range(self.bisect_steps):
            mid = (best + worst) // 2
            if mid <= best or mid >= worst or time.monotonic() + self.step_s >= deadline:
                break
            if step(mid).held:
                best = mid
            else:
                worst = mid
        return best


@contextlib.contextmanager
def sippy_target(bench: Bench) -> Iterator[tuple[int, int]]:
    """Start sippy's B2BUA routing every call statically to a SIPp uas; yield its port."""
    program = sippy_b2bua()
    uas_port, port = free_port(), free_port()
    run_dir = Path(tempfile.mkdtemp(prefix="sippy-", dir=bench.work))
    uas = bench.start_uas("sippy", uas_port)
    log = run_dir / "sippy-b2bua.log"
    argv = [
        str(program),
        "-f",
        "-l",
        HOST,
        "-p",
        str(port),
        "-s",
        f"{HOST}:{uas_port}",
        "-u",
        "-A",
        "0",
        "-c",
        str(run_dir / "sippy.sock"),
        "-P",
        str(run_dir / "sippy.pid"),
        "-L",
        str(log),
    ]
    proc = spawn(argv, run_dir / "sippy-stdout.log", cwd=bench.work)
    try:
        wait_ready(port, proc, run_dir / "sippy-stdout.log")
        yield port, proc.pid
    finally:
        stop(proc)
        stop(uas)


CALLPLANE_CONFIG = """tenants:
  - name: bench
    domain: {host}
    default: true
    country: FR
    extensions:
      - {{number: "{ext}", password: "{pw}", name: "Bench", ring_timeout_s: 20}}
    trunks:
      - {{name: loadgen, host: {host}, port: {uac_port}, transport: udp, auth: ip,
         inbound_sources: ["{host}:{uac_port}"], caller_id: {{mode: fixed, number: "{did}"}},
         dids: [{{number: "{did}", extension: "{ext}"}}]}}
"""
FLOOD_OFF = "100000000"  # the load generator is a trusted trunk; flood control is not measured


@contextlib.contextmanager
def callplane_target(bench: Bench, uac_port: int) -> Iterator[tuple[int, int]]:
    """Start `callplane serve`: a trunk for the uac, extension 1001 on the uas; yield its port."""
    python = REPO_ROOT / ".venv" / "bin" / "python"
    if not python.exists():
        python = Path(sys.executable)
    data_dir = Path(tempfile.mkdtemp(prefix="callplane-data-", dir=bench.work))
    config = data_dir / "callplane.yaml"
    config.write_text(
        CALLPLANE_CONFIG.format(
            host=HOST, ext=EXTENSION, pw=EXTENSION_PASSWORD, uac_port=uac_port, did=DID
        )
    )
    base = [str(python), "-m", "callplane", "--data-dir", str(data_dir)]
    imported = subprocess.run(
        [*base, "import", str(config)],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if imported.returncode != 0:
        raise BenchError(f"callplane import failed: {imported.stderr.decode(errors='replace')}")
    port, uas_port = free_port(), free_port()
    log = data_dir / "callplane.log"
    serve = [
        *base,
        "serve",
        "--sip-host",
        HOST,
        "--sip-port",
        str(port),
        "--no-demo",
        "--flood-max-requests",
        FLOOD_OFF,
        "--digest-algorithms",
        "MD5",  # SIPp answers MD5 challenges only
    ]
    proc = spawn(serve, log, cwd=REPO_ROOT)
    uas: subprocess.Popen[bytes] | None = None
    try:
        wait_ready(port, proc, log)
        bench.register(port, uas_port)
        uas = bench.start_uas("callplane", uas_port)
        time.sleep(0.5)
        yield port, proc.pid
    finally:
        stop(proc)
        if uas is not None:
            stop(uas)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads (proc(5): utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    bench: Bench,
    name: str,
    target: Callable[[], contextlib.AbstractContextManager[tuple[int, int]]],
    uac: int,
) -> int:
    """Run the rate search against one B2BUA; 0 when it could not be set up.

    Each step gets a freshly started B2BUA, so an overloaded step cannot poison the next one
    (sippy stays wedged for minutes after an overload). Also prints the B2BUA's CPU time per
    call over the steps it held: a figure that does not depend on how the two cores are shared
    with the SIPp processes.
    """
    cpu_s = 0.0
    calls = 0

    def step(rate: int) -> StepResult:
        nonlocal cpu_s, calls
        with target() as (port, pid):
            before_s = cpu_seconds(pid)
            result = bench.step(name, port, uac, rate)
            if result.held:
                cpu_s += cpu_seconds(pid) - before_s
                calls += result.successful
        return result

    try:
        best = bench.search(name, step)
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        print(f"{name}: not measured: {exc}", file=sys.stderr, flush=True)
        return 0
    print(f"{name}_cpu_ms_per_call: {1000 * cpu_s / max(calls, 1):.2f}", flush=True)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="5 s steps, about 2 minutes")
    parser.add_argument("--only", choices=["callplane", "sippy"], help="measure one B2BUA")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, stats)")
    args = parser.parse_args(argv)
    if shutil.which("sipp") is None:
        print("sipp not found (Debian package sip-tester)", file=sys.stderr)
        return 2
    stop_children_on_exit()
    work = Path(tempfile.mkdtemp(prefix="sip-cps-"))
    if args.quick:
        bench = Bench(work, STEP_S_QUICK, BISECT_STEPS_QUICK, BUDGET_S_QUICK)
    else:
        bench = Bench(work, STEP_S_FULL, BISECT_STEPS_FULL, BUDGET_S_FULL)
    uac_port = free_port()
    figures: dict[str, int] = {}
    try:
        if args.only in (None, "callplane"):
            figures["callplane"] = measure(
                bench, "callplane", lambda: callplane_target(bench, uac_port), uac_port
            )
            print(f"callplane_cps: {figures['callplane']}", flush=True)
        if args.only in (None, "sippy"):
            figures["sippy"] = measure(bench, "sippy", lambda: sippy_target(bench), uac_port)
            print(f"sippy_cps: {figures['sippy']}", flush=True)
    finally:
        stop_all()
        if args.keep:
            print(f"work dir kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if len(figures) == 2:
        ratio = figures["callplane"] / figures["sippy"] if figures["sippy"] else 0.0
        print(f"callplane/sippy: {ratio:.2f}", flush=True)
    return 0 if all(figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
