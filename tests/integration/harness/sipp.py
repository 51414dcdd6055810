"""SIPp as a subprocess: run a scenario to completion, or keep a UAS in the background.

SIPp's exit code says whether every call followed its scenario (0), some failed (1) or it
could not run (others); the statistics file (`-trace_stat`) gives the counts and the message
file (`-trace_msg`) the SIP trace that explains a failure.
"""

from __future__ import annotations

import csv
import itertools
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .ports import LOOPBACK, free_udp_tcp_port, tcp_port_listening, udp_port_in_use

SCENARIOS = Path(__file__).parent / "scenarios"
SIPP = "sipp"
DEFAULT_TIMEOUT_S = 30  # one call scenario with a few seconds of pause fits well within this
PROCESS_GRACE_S = 10  # beyond SIPp's own -timeout, before the process is killed
LISTEN_WAIT_S = 5.0  # a background UAS binds its port within this
STOP_GRACE_S = 5.0
EXIT_ALL_CALLS_OK = 0  # SIPp: all calls successful
TRACE_TAIL_CHARS = 6_000  # enough of a message trace to show the failing exchange

_run_ids = itertools.count()


def sipp_available() -> bool:
    return shutil.which(SIPP) is not None


@dataclass(frozen=True, slots=True)
class SippResult:
    """What one SIPp run did."""

    scenario: str
    exit_code: int
    successful: int
    failed: int
    error_log: str
    messages: str

    @property
    def ok(self) -> bool:
        """Every call completed its scenario and none failed."""
        return self.exit_code == EXIT_ALL_CALLS_OK and self.failed == 0 and self.successful > 0

    def explain(self) -> str:
        """A failure message with the SIP trace's tail and SIPp's error log."""
        return (
            f"sipp {self.scenario}: exit {self.exit_code}, {self.successful} successful, "
            f"{self.failed} failed\n--- errors ---\n{self.error_log[-TRACE_TAIL_CHARS:]}\n"
            f"--- messages ---\n{self.messages[-TRACE_TAIL_CHARS:]}"
        )


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _counts(stat_path: Path) -> tuple[int, int]:
    """Successful and failed calls from the last row of SIPp's `-trace_stat` CSV."""
    text = _read(stat_path)
    rows = [row for row in csv.reader(text.splitlines(), delimiter=";") if row]
    if len(rows) < 2:
        return 0, 0
    header, last = rows[0], rows[-1]
    values = dict(zip(header, last, strict=False))
    return int(values.get("SuccessfulCall(C)", 0) or 0), int(values.get("FailedCall(C)", 0) or 0)


@dataclass
class _Files:
    stat: Path
    errors: Path
    messages: Path

    @classmethod
    def in_dir(cls, work_dir: Path, scenario: str) -> _Files:
        stem = f"{Path(scenario).stem}-{next(_run_ids)}"
        work_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            stat=work_dir / f"{stem}.stat.csv",
            errors=work_dir / f"{stem}.errors.log",
            messages=work_dir / f"{stem}.messages.log",
        )


def _command(
    scenario: str,
    *,
    files: _Files,
    local_port: int,
    remote: str | None,
    transport: str,
    service: str | None,
    auth_user: str | None,
    auth_password: str | None,
    auth_uri: str | None,
    calls: int,
    timeout_s: float,
    pause_ms: int | None,
    keys: dict[str, str] | None,
) -> list[str]:
    mode = {"udp": "u1", "tcp": "t1"}[transport.lower()]
    command = [SIPP]
    if remote is not None:
        command.append(remote)
    command += [
        "-sf",
        str(SCENARIOS / scenario),
        "-t",
        mode,
        "-i",
        LOOPBACK,
        "-p",
        str(local_port),
        "-m",
        str(calls),
        "-nostdin",
        "-aa",
        "-timeout",
        f"{int(timeout_s)}s",
        "-timeout_error",
        "-trace_err",
        "-error_file",
        str(files.errors),
        "-trace_msg",
        "-message_file",
        str(files.messages),
        "-trace_stat",
        "-stf",
        str(files.stat),
        "-fd",
        "1",
    ]
    if service is not None:
        command += ["-s", service]
    if auth_user is not None:
        command += ["-au", auth_user]
    if auth_password is not None:
        command += ["-ap", auth_password]
    if auth_uri is not None:
        command += ["-auth_uri", auth_uri]
    if pause_ms is not None:
        command += ["-d", str(pause_ms)]
    for key, value in (keys or {}).items():
        command += ["-key", key, value]
    return command


def _result(scenario: str, exit_code: int, files: _Files) -> SippResult:
    successful, failed = _counts(files.stat)
    return SippResult(
        scenario=scenario,
        exit_code=exit_code,
        successful=successful,
        failed=failed,
        error_log=_read(files.errors),
        messages=_read(files.messages),
    )


def run_sipp(
    scenario: str,
    *,
    work_dir: Path,
    local_port: int,
    remote: str | None = None,
    transport: str = "udp",
    service: str | None = None,
    auth_user: str | None = None,
    auth_password: str | None = None,
    auth_uri: str | None = None,
    calls: int = 1,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    pause_ms: int | None = None,
    keys: dict[str, str] | None = None,
) -> SippResult:
    """Run `scenario` (a file in scenarios/) to completion against `remote` (host:port).

    SIPp's digest `uri` defaults to `sip:remote`; pass `auth_uri` equal to the Request-URI for
    requests other than REGISTER, since a server checks that they match (RFC 2617 §3.2.2.5).
    """
    files = _Files.in_dir(work_dir, scenario)
    command = _command(
        scenario,
        files=files,
        local_port=local_port,
        remote=remote,
        transport=transport,
        service=service,
        auth_user=auth_user,
        auth_password=auth_password,
        auth_uri=auth_uri,
        calls=calls,
        timeout_s=timeout_s,
        pause_ms=pause_ms,
        keys=keys,
    )
    try:
        done = subprocess.run(
            command,
            cwd=work_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout_s + PROCESS_GRACE_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return _result(scenario, -1, files)
    result = _result(scenario, done.returncode, files)
    if done.stderr:
        stderr = done.stderr.decode(errors="replace")
        result = SippResult(
            scenario=result.scenario,
            exit_code=result.exit_code,
            successful=result.successful,
            failed=result.failed,
            error_log=result.error_log + "\n--- stderr ---\n" + stderr,
            messages=result.messages,
        )
    return result


class SippUas:
    """A SIPp scenario running in the background (a phone or a provider waiting for calls)."""

    def __init__(
        self,
        scenario: str,
        *,
        work_dir: Path,
        local_port: int,
        transport: str = "udp",
        service: str | None = None,
        calls: int = 1,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        pause_ms: int | None = None,
        keys: dict[str, str] | None = None,
    ) -> None:
        self.scenario = scenario
        self.local_port = local_port
        self.transport = transport.lower()
        self._timeout_s = timeout_s
        self._files = _Files.in_dir(work_dir, scenario)
        command = _command(
            scenario,
            files=self._files,
            local_port=local_port,
            remote=None,
            transport=transport,
            service=service,
            auth_user=None,
            auth_password=None,
            auth_uri=None,
            calls=calls,
            timeout_s=timeout_s,
            pause_ms=pause_ms,
            keys=keys,
        )
        self._process = subprocess.Popen(
            command,
            cwd=work_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + LISTEN_WAIT_S
        while time.monotonic() < deadline and self._process.poll() is None:
            if self.transport == "udp" and udp_port_in_use(self.local_port):
                return
            if self.transport == "tcp" and tcp_port_listening(self.local_port):
                return
            time.sleep(0.02)

    def wait(self, timeout_s: float | None = None) -> SippResult:
        """Wait for the scenario to finish its calls (or its own timeout) and return the result."""
        limit = self._timeout_s + PROCESS_GRACE_S if timeout_s is None else timeout_s
        try:
            exit_code = self._process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.stop()
            exit_code = -1
        return _result(self.scenario, exit_code, self._files)

    def stop(self) -> None:
        """Terminate the process if it still runs."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=STOP_GRACE_S)


def register_phone(
    server_target: str,
    *,
    work_dir: Path,
    number: str,
    password: str,
    local_port: int,
    transport: str = "udp",
    expires_s: int = 3600,
) -> SippResult:
    """REGISTER `number` with its Contact on 127.0.0.1:local_port, answering the digest challenge.

    A SIPp UAS started afterwards on the same port then receives the calls to `number`.
    """
    return run_sipp(
        "register_only.xml",
        work_dir=work_dir,
        local_port=local_port,
        remote=server_target,
        transport=transport,
        service=number,
        auth_user=number,
        auth_password=password,
        keys={"expires": str(expires_s)},
    )


def place_call(
    scenario: str,
    server_target: str,
    *,
    work_dir: Path,
    caller: str,
    password: str,
    callee: str,
    transport: str = "udp",
    pause_ms: int = 1_000,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> SippResult:
    """Phone `caller` (a SIPp uac scenario) calls `callee` through the server, with digest auth."""
    return run_sipp(
        scenario,
        work_dir=work_dir,
        local_port=free_udp_tcp_port(),
        remote=server_target,
        transport=transport,
        service=callee,
        auth_user=caller,
        auth_password=password,
        auth_uri=f"sip:{callee}@{server_target}",
        pause_ms=pause_ms,
        timeout_s=timeout_s,
        keys={"caller": caller},
    )
