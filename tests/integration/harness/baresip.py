"""baresip as a real phone: a private config directory, auto-answer, driven over ctrl_tcp.

baresip 1.0 (libre 1.x) knows only MD5 digest and gives up ("Function not implemented") on a
401 that also offers SHA-256, so its server must offer MD5 alone (`BARESIP_DIGEST_ALGORITHMS`).

ctrl_tcp speaks netstrings (`LEN:JSON,`): commands `{"command", "params", "token"}` get a
`{"response": true, "ok", "data", "token"}` back, and the phone reports what happens as
`{"event": true, "class", "type", ...}` (REGISTER_OK, CALL_RINGING, CALL_ESTABLISHED, CALL_CLOSED).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import queue
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import wave
from pathlib import Path
from typing import Any

from .ports import LOOPBACK, free_udp_tcp_port, tcp_port_listening

BARESIP = "baresip"
MODULE_PATH = "/usr/lib/baresip/modules"
START_TIMEOUT_S = 10.0  # baresip opens its ctrl_tcp port within this
EVENT_TIMEOUT_S = 15.0  # registration or a call's progress on 127.0.0.1
STOP_GRACE_S = 5.0
SAMPLE_RATE_HZ = 8_000  # G.711 (RFC 3551 §4.5.14): no resampling in baresip
TONE_HZ = 440.0
TONE_AMPLITUDE = 8_000  # well below full scale (32767): no clipping in G.711
SOURCE_SECONDS = 10  # aufile loops the file when it ends
REGISTER_INTERVAL_S = 600
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # baresip colours its status text
BARESIP_DIGEST_ALGORITHMS = "MD5"  # a `serve --digest-algorithms` baresip 1.0 can answer


class BaresipError(RuntimeError):
    """baresip did not start, answered a command with an error, or an event did not come."""


def baresip_available() -> bool:
    return shutil.which(BARESIP) is not None


def write_tone_wav(path: Path, seconds: int = SOURCE_SECONDS, tone_hz: float = TONE_HZ) -> None:
    """A mono 16-bit 8 kHz WAV of a tone (440 Hz by default), the phone's microphone."""
    frames = bytearray()
    for n in range(seconds * SAMPLE_RATE_HZ):
        sample = int(TONE_AMPLITUDE * math.sin(2 * math.pi * tone_hz * n / SAMPLE_RATE_HZ))
        frames += struct.pack("<h", sample)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE_HZ)
        out.writeframes(bytes(frames))


def _netstring(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload).encode()
    return str(len(data)).encode() + b":" + data + b","


class Baresip:
    """One baresip phone registered as `number` to the server at 127.0.0.1:server_port."""

    def __init__(
        self,
        work_dir: Path,
        *,
        number: str,
        password: str,
        server_port: int,
        transport: str = "udp",
        tone_hz: float = TONE_HZ,
    ) -> None:
        self.number = number
        self.tone_hz = tone_hz
        self.server_port = server_port
        self.sip_port = free_udp_tcp_port()
        self.ctrl_port = free_udp_tcp_port()
        self.config_dir = work_dir / f"baresip-{number}"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.config_dir / "baresip.log"
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._responses: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen_events: list[dict[str, Any]] = []
        self._tokens = itertools.count(1)
        self._write_config(password, transport)
        self._process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None

    @property
    def aor(self) -> str:
        return f"sip:{self.number}@{LOOPBACK}:{self.server_port}"

    def _write_config(self, password: str, transport: str) -> None:
        source = self.config_dir / "microphone.wav"
        write_tone_wav(source, tone_hz=self.tone_hz)
        self.speaker_path = self.config_dir / "speaker.wav"
        config = {
            "poll_method": "epoll",
            "sip_listen": f"{LOOPBACK}:{self.sip_port}",
            "module_path": MODULE_PATH,
            # sndfile dumps each call's decoded audio (what the speaker would play) to WAV
            "module": ["g711.so", "aufile.so", "sndfile.so"],
            "snd_path": str(self.config_dir),
            "module_app": ["account.so", "menu.so", "ctrl_tcp.so"],
            "ctrl_tcp_listen": f"{LOOPBACK}:{self.ctrl_port}",
            "audio_source": f"aufile,{source}",
            "audio_player": f"aufile,{self.speaker_path}",
            "audio_alert": f"aufile,{self.config_dir / 'alert.wav'}",
            "audio_path": str(self.config_dir),
            "net_interface": LOOPBACK,  # SIP and media from 127.0.0.1, not the default route
        }
        lines: list[str] = []
        for key, value in config.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"{key}\t{item}")
        (self.config_dir / "config").write_text("\n".join(lines) + "\n")
        account = (
            f"<{self.aor};transport={transport.lower()}>;auth_pass={password};"
            f"answermode=auto;regint={REGISTER_INTERVAL_S};audio_codecs=PCMU,PCMA\n"
        )
        (self.config_dir / "accounts").write_text(account)
        (self.config_dir / "contacts").write_text("")

    def heard(self) -> Path:
        """The WAV of what this phone received in its last call (sndfile's decoder dump)."""
        dumps = sorted(self.config_dir.glob("dump-*-dec.wav"))
        if not dumps:
            raise BaresipError(f"{self.number}: no received audio in {self.config_dir}")
        return dumps[-1]

    def start(self) -> None:
        """Start the phone in the foreground (its output goes to baresip.log) and connect."""
        log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [BARESIP, "-f", str(self.config_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not tcp_port_listening(self.ctrl_port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise BaresipError(f"baresip did not start:\n{self.log_text()}")
            time.sleep(0.05)
        self._sock = socket.create_connection((LOOPBACK, self.ctrl_port), timeout=5)
        self._sock.settimeout(None)
        self._reader = threading.Thread(
            target=self._read, args=(self._sock,), name=f"baresip-{self.number}"
        )
        self._reader.daemon = True
        self._reader.start()

    def _read(self, sock: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                chunk = sock.recv(65_536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b":" in buffer:
                length_text, rest = buffer.split(b":", 1)
                length = int(length_text)
                if len(rest) < length + 1:
                    break
                message = json.loads(rest[:length])
                buffer = rest[length + 1 :]
                if message.get("event"):
                    self._events.put(message)
                elif message.get("response"):
                    self._responses.put(message)

    def command(self, command: str, params: str = "") -> dict[str, Any]:
        """Send a ctrl_tcp command and return its response; raise BaresipError if not ok."""
        if self._sock is None:
            raise BaresipError("baresip is not started")
        token = str(next(self._tokens))
        self._sock.sendall(_netstring({"command": command, "params": params, "token": token}))
        deadline = time.monotonic() + EVENT_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                response = self._responses.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if response.get("token") == token:
                if not response.get("ok", False):
                    raise BaresipError(f"{command} {params!r} failed: {response}")
                return response
        raise BaresipError(f"no response to {command} {params!r}")

    def wait_event(self, event_type: str, *, timeout_s: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        """Wait for an event of this type (e.g. CALL_ESTABLISHED); fail on timeout."""
        deadline = time.monotonic() + timeout_s
        for event in self.seen_events:
            if event.get("type") == event_type and not event.get("_consumed"):
                event["_consumed"] = True
                return event
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [event.get("type") for event in self.seen_events]
                raise BaresipError(
                    f"{self.number}: no {event_type} in {timeout_s} s; events: {seen}\n"
                    f"{self.log_text()[-3000:]}"
                )
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen_events.append(event)
            if event.get("type") == event_type:
                event["_consumed"] = True
                return event
            if event.get("type") == "REGISTER_FAIL" and event_type == "REGISTER_OK":
                raise BaresipError(f"{self.number}: registration failed: {event}")

    def wait_registered(self, *, timeout_s: float = EVENT_TIMEOUT_S) -> None:
        """Poll `reginfo` until the account shows OK (it may register before we connect)."""
        deadline = time.monotonic() + timeout_s
        while True:
            info = ANSI_ESCAPE.sub("", str(self.command("reginfo").get("data", "")))
            if re.search(r"\bOK\b", info):
                return
            if time.monotonic() > deadline:
                raise BaresipError(
                    f"{self.number}: not registered in {timeout_s} s: {info!r}\n"
                    f"{self.log_text()[-3000:]}"
                )
            time.sleep(0.2)

    def dial(self, number: str) -> None:
        self.command("dial", f"sip:{number}@{LOOPBACK}:{self.server_port}")

    def hangup(self) -> None:
        self.command("hangup")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Close the control connection and terminate baresip."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=STOP_GRACE_S)
        self._process = None
