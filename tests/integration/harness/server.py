"""The Callplane server under test, run as a subprocess: import a YAML config, serve, stop.

The server is driven only through its command line (`callplane import`, `serve`, `cdr list`,
`registrations list`), as an operator would, so these tests exercise what users run.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .ports import LOOPBACK, free_udp_tcp_port

READY_TIMEOUT_S = 15.0  # the server must answer OPTIONS within this after start
READY_POLL_S = 0.1
STOP_GRACE_S = 10.0  # SIGTERM, then SIGKILL after this
CLI_TIMEOUT_S = 60.0
CDR_WAIT_S = 10.0  # a CDR row is written when the call ends; allow the server to finish it
NO_FLOOD_CONTROL = 1_000_000  # --flood-max-requests that no test reaches unless it tests floods
# SIPp 3.6.1 answers only the first WWW-Authenticate it receives and knows only MD5, so the
# peers' tests offer MD5 first; SHA-256 is still offered and tested with a raw client (RFC 8760).
PEER_DIGEST_ALGORITHMS = "MD5,SHA-256"

TENANT_NAME = "acme"
PROVIDER_DID = "+33123456789"
TRUNK_USERNAME = "acme"
TRUNK_PASSWORD = "prov-pw"

# (number, password, name, ring_timeout_s): 1003 rings briefly for the no-answer test,
# 1004 never registers (480), no extension 1999 exists (404).
EXTENSIONS: tuple[tuple[str, str, str, int], ...] = (
    ("1001", "pw-1001", "Alice", 20),
    ("1002", "pw-1002", "Bob", 20),
    ("1003", "pw-1003", "Carol", 2),
    ("1004", "pw-1004", "Dave", 20),
    ("1005", "pw-1005", "Eve", 20),
)


class ServerStartError(RuntimeError):
    """The server exited or did not answer OPTIONS in time; carries its log."""


class CliError(RuntimeError):
    """A `callplane` command exited non-zero."""


def extension_password(number: str) -> str:
    """The password of an extension in the default config."""
    return next(password for num, password, _, _ in EXTENSIONS if num == number)


def default_config(
    *,
    provider_port: int | None = None,
    inbound_port: int | None = None,
    trunk_auth: str = "ip",
) -> dict[str, Any]:
    """Build the default tenant: five extensions, one trunk to a SIPp provider, one DID.

    The trunk points at `provider_port` (the SIPp uas playing the provider) and accepts INVITEs
    from `inbound_port` (the SIPp uac playing the provider's inbound side); free ports by default.
    """
    provider_port = provider_port or free_udp_tcp_port()
    inbound_port = inbound_port or free_udp_tcp_port()
    trunk: dict[str, Any] = {
        "name": "provider",
        "host": LOOPBACK,
        "port": provider_port,
        "transport": "udp",
        "auth": trunk_auth,
        "username": TRUNK_USERNAME,
        "password": TRUNK_PASSWORD,
        "inbound_sources": [f"{LOOPBACK}:{inbound_port}"],
        "caller_id": {"mode": "fixed", "number": PROVIDER_DID},
        "dids": [{"number": PROVIDER_DID, "extension": "1001"}],
    }
    return {
        "tenants": [
            {
                "name": TENANT_NAME,
                "domain": LOOPBACK,
                "default": True,
                "country": "FR",
                "timezone": "Europe/Paris",
                "extensions": [
                    {
                        "number": number,
                        "password": password,
                        "name": name,
                        "ring_timeout_s": ring_timeout_s,
                        "caller_id": PROVIDER_DID,
                    }
                    for number, password, name, ring_timeout_s in EXTENSIONS
                ],
                "trunks": [trunk],
            }
        ]
    }


def trunk_of(config: dict[str, Any]) -> dict[str, Any]:
    """The first trunk of the first tenant of a config built by `default_config`."""
    trunk: dict[str, Any] = config["tenants"][0]["trunks"][0]
    return trunk


def inbound_port_of(config: dict[str, Any]) -> int:
    """The port the provider's inbound side must send from to be trusted."""
    return int(trunk_of(config)["inbound_sources"][0].rsplit(":", 1)[1])


def sip_options(port: int, *, timeout_s: float = 1.0) -> int | None:
    """Send one OPTIONS over UDP to 127.0.0.1:port; return the response status, None if silent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        local_port = sock.getsockname()[1]
        branch = "z9hG4bK" + secrets.token_hex(8)
        request = (
            f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{LOOPBACK}:{port}>\r\n"
            f"Call-ID: {secrets.token_hex(8)}@{LOOPBACK}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Accept: application/sdp\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout_s)
        sock.sendto(request.encode(), (LOOPBACK, port))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65_535)
            except (TimeoutError, ConnectionRefusedError):
                return None
            status_line = data.split(b"\r\n", 1)[0].decode(errors="replace").split()
            if len(status_line) >= 2 and status_line[0] == "SIP/2.0" and status_line[1] != "100":
                return int(status_line[1])
    return None


def _callplane(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "callplane", "--data-dir", str(data_dir), *args]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise CliError(
            f"{' '.join(args)} exited {done.returncode}\nstdout:\n{done.stdout}\n"
            f"stderr:\n{done.stderr}"
        )
    return done


def _flag_args(flags: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in flags.items():
        option = "--" + name.replace("_", "-")
        if value is True:
            args.append(option)
        elif value is not False and value is not None:
            args += [option, str(value)]
    return args


@dataclass
class RunningServer:
    """A `callplane serve` process listening for SIP on UDP and TCP 127.0.0.1:sip_port."""

    data_dir: Path
    sip_port: int
    log_path: Path
    serve_flags: dict[str, Any]
    process: subprocess.Popen[bytes] | None = None
    _log_files: list[Any] = field(default_factory=list)

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def target(self) -> str:
        """host:port, as SIPp takes its remote party."""
        return f"{LOOPBACK}:{self.sip_port}"

    def start(self) -> None:
        """Start serving on the same data directory and port, and wait until OPTIONS is answered."""
        command = [
            sys.executable,
            "-m",
            "callplane",
            "--data-dir",
            str(self.data_dir),
            "serve",
            "--sip-host",
            LOOPBACK,
            "--sip-port",
            str(self.sip_port),
            "--no-demo",
            *_flag_args(self.serve_flags),
        ]
        log = self.log_path.open("ab")
        self._log_files.append(log)
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"callplane serve exited {self.process.returncode}:\n{self.log_text()}"
                )
            if sip_options(self.sip_port, timeout_s=READY_POLL_S * 5) is not None:
                return
            time.sleep(READY_POLL_S)
        self.stop()
        raise ServerStartError(
            f"callplane serve did not answer OPTIONS in {READY_TIMEOUT_S} s:\n{self.log_text()}"
        )

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_GRACE_S; return the exit code (None if never run)."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_GRACE_S)
        for log in self._log_files:
            log.close()
        self._log_files.clear()
        return process.returncode

    def restart(self) -> None:
        """Stop and start again on the same data directory and port."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        for log in self._log_files:
            log.flush()
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cli(self, *args: str) -> str:
        """Run `callplane --data-dir D ARGS...` and return its stdout."""
        return _callplane(self.data_dir, *args).stdout

    def cdrs(self) -> list[dict[str, Any]]:
        """The CDR rows, as `callplane cdr list --json` prints them."""
        rows: list[dict[str, Any]] = json.loads(self.cli("cdr", "list", "--json"))
        return rows

    def wait_for_cdrs(self, count: int, *, timeout_s: float = CDR_WAIT_S) -> list[dict[str, Any]]:
        """Poll until at least `count` CDR rows exist (they are written as calls end)."""
        deadline = time.monotonic() + timeout_s
        rows = self.cdrs()
        while len(rows) < count and time.monotonic() < deadline:
            time.sleep(0.2)
            rows = self.cdrs()
        return rows

    def registrations(self) -> str:
        """What `callplane registrations list` prints."""
        return self.cli("registrations", "list")


def start_server(tmp_path: Path, config: dict[str, Any], **serve_flags: Any) -> RunningServer:
    """Write `config` as YAML, import it into a fresh data directory, serve it and wait ready.

    `serve_flags` become `serve` options (`flood_max_requests=5` -> `--flood-max-requests 5`);
    flood control is off unless the caller sets `flood_max_requests`, and MD5 is offered before
    SHA-256 (`PEER_DIGEST_ALGORITHMS`) unless the caller sets `digest_algorithms`.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    data_dir = Path(os.fspath(tmp_path)) / "data"
    data_dir.mkdir(exist_ok=True)
    config_path = tmp_path / "callplane.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    _callplane(data_dir, "import", str(config_path))
    # SIPp 3.6 answers only MD5 challenges and fails on a SHA-256 one listed first (RFC 8760
    # §2.4 asks UACs to skip what they do not support); tests that need SHA-256 pass their own.
    flags = {
        "flood_max_requests": NO_FLOOD_CONTROL,
        "digest_algorithms": PEER_DIGEST_ALGORITHMS,
        **serve_flags,
    }
    server = RunningServer(
        data_dir=data_dir,
        sip_port=free_udp_tcp_port(),
        log_path=tmp_path / "callplane.log",
        serve_flags=flags,
    )
    server.start()
    return server
