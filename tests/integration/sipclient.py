"""A tiny raw SIP client for hostile-input tests: send exact bytes, wait for what comes back.

SIPp cannot send a malformed message on purpose, so these tests speak SIP by hand over UDP or TCP
from 127.0.0.1 (or another loopback address, to play a second source). Responses are parsed with
Callplane's own `parse`; the raw bytes are kept for byte-level comparisons.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import socket
import time
from dataclasses import dataclass, field

from callplane.core.sip.errors import SipParseError
from callplane.core.sip.message import Response, parse

LOOPBACK = "127.0.0.1"
DEFAULT_WAIT_S = 2.0  # a server on loopback answers in milliseconds; this bounds a silent one
MAX_DATAGRAM = 65_535
RECV_CHUNK = 65_536
PROVISIONAL_MAX = 199  # RFC 3261 §7.2: 1xx responses are provisional, not the final answer

_AUTH_PARAM_RE = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)')


class SipClientError(RuntimeError):
    """The server sent bytes the test client could not frame or parse as a response."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One response as received: raw bytes, status line and header lines in wire order.

    `message` is Callplane's own parse when the bytes are well formed; a 400 that echoes the
    malformed header it complains about is still read here, by its status line and lines.
    """

    raw: bytes
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    message: Response | None

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive name), None if absent."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def header_all(self, name: str) -> list[str]:
        """Every value of a header, in wire order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def header_names(self) -> list[str]:
        """Header names in wire order, as received."""
        return [name for name, _ in self.headers]


def _lenient_lines(head: str) -> tuple[tuple[str, str], ...]:
    """Header lines split at the first colon, folded lines joined (RFC 3261 §7.3.1)."""
    headers: list[tuple[str, str]] = []
    for line in head.split("\r\n")[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if colon:
            headers.append((name.strip(), value.strip()))
    return tuple(headers)


def parse_reply(data: bytes) -> Reply:
    """Read bytes received from the server; they must at least carry a SIP status line."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    status_line = head.split("\r\n", 1)[0]
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version != "SIP/2.0" or not code.isdigit() or len(code) != 3:
        raise SipClientError(f"server sent something that is not a SIP response: {data!r}")
    message: Response | None
    try:
        parsed = parse(data)
    except SipParseError:
        message = None
    else:
        message = parsed if isinstance(parsed, Response) else None
    return Reply(data, int(code), reason, _lenient_lines(head), message)


def auth_params(challenge: str) -> dict[str, str]:
    """The parameters of a Digest challenge (RFC 7616 §3.3), quotes removed."""
    scheme, _, rest = challenge.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipClientError(f"not a Digest challenge: {challenge!r}")
    return {
        key.lower(): value[1:-1] if value.startswith('"') else value
        for key, value in _AUTH_PARAM_RE.findall(rest)
    }


def md5_challenge(reply: Reply) -> str:
    """The MD5 Digest challenge among a 401's WWW-Authenticate values (RFC 8760 §2.4 lists the
    preferred algorithm first; this client speaks MD5 only)."""
    for value in reply.header_all("WWW-Authenticate"):
        if auth_params(value).get("algorithm", "MD5").upper() == "MD5":
            return value
    raise SipClientError(f"no MD5 challenge in {reply.raw!r}")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # RFC 2617 digest; not a security use here


def digest_authorization(
    challenge: str,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """An Authorization value answering an MD5 Digest challenge (RFC 2617 §3.2.2, qop=auth)."""
    params = auth_params(challenge)
    realm, nonce = params["realm"], params["nonce"]
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    parts = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        "algorithm=MD5",
    ]
    if "auth" in params.get("qop", "").split(","):
        cnonce = cnonce or secrets.token_hex(8)
        nc_text = f"{nc:08x}"
        response = _md5(f"{ha1}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}")
        parts += ["qop=auth", f"nc={nc_text}", f'cnonce="{cnonce}"']
    else:
        response = _md5(f"{ha1}:{nonce}:{ha2}")
    parts.append(f'response="{response}"')
    if "opaque" in params:
        parts.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(parts)


@dataclass
class Dialogue:
    """The identifiers that stay the same across the requests of one test conversation."""

    call_id: str = field(default_factory=lambda: secrets.token_hex(10) + "@test")
    from_tag: str = field(default_factory=lambda: secrets.token_hex(5))
    cseq: int = 0

    def next_cseq(self) -> int:
        self.cseq += 1
        return self.cseq


class SipClient:
    """A socket bound on `bind_host` talking SIP to 127.0.0.1:`server_port` over UDP or TCP."""

    def __init__(
        self,
        server_port: int,
        *,
        transport: str = "udp",
        bind_host: str = LOOPBACK,
        bind_port: int = 0,
        server_host: str = LOOPBACK,
    ) -> None:
        self.transport = transport.upper()
        self.server = (server_host, server_port)
        kind = socket.SOCK_DGRAM if self.transport == "UDP" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind((bind_host, bind_port))
        if self.transport == "UDP":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        else:
            self.sock.connect(self.server)
        self.host, self.port = self.sock.getsockname()[:2]
        self._buffer = b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- sending -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send exactly these bytes (one datagram over UDP)."""
        if self.transport == "UDP":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def via(self, branch: str | None = None) -> str:
        branch = branch or "z9hG4bK" + secrets.token_hex(8)
        return f"SIP/2.0/{self.transport} {self.host}:{self.port};branch={branch};rport"

    def build(
        self,
        method: str,
        *,
        uri: str | None = None,
        user: str = "probe",
        to_user: str | None = None,
        dialogue: Dialogue | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_length: int | None = None,
        cseq_method: str | None = None,
    ) -> bytes:
        """A well-formed request from `user` at this socket; the caller may override any field."""
        server_host, server_port = self.server
        dialogue = dialogue or Dialogue()
        to_user = user if to_user is None else to_user
        uri = uri or f"sip:{to_user}@{server_host}:{server_port}"
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: {self.via()}",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{server_host}>;tag={dialogue.from_tag}",
            f"To: <sip:{to_user}@{server_host}>",
            f"Call-ID: {dialogue.call_id}",
            f"CSeq: {dialogue.next_cseq()} {cseq_method or method}",
            f"Contact: <sip:{user}@{self.host}:{self.port}>",
        ]
        lines += [f"{name}: {value}" for name, value in headers or []]
        length = len(body) if content_length is None else content_length
        lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    # -- receiving ---------------------------------------------------------------------------

    def recv_raw(self, timeout_s: float = DEFAULT_WAIT_S) -> bytes | None:
        """The next message's bytes (a datagram, or one framed message on TCP); None on silence.

        On TCP, b"" means the server closed the connection.
        """
        if self.transport == "UDP":
            self.sock.settimeout(timeout_s)
            try:
                return self.sock.recv(RECV_CHUNK)
            except (TimeoutError, ConnectionRefusedError):
                return None
        deadline = time.monotonic() + timeout_s
        while True:
            framed = self._frame()
            if framed is not None:
                return framed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(RECV_CHUNK)
            except TimeoutError:
                return None
            except ConnectionResetError:
                return b""
            if not chunk:
                return b""
            self._buffer += chunk

    def _frame(self) -> bytes | None:
        """One whole message out of the TCP buffer, by Content-Length (RFC 3261 §18.3)."""
        self._buffer = self._buffer.lstrip(b"\r\n")
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self._buffer[:end]
        match = re.search(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)", head, re.IGNORECASE)
        length = int(match.group(1)) if match else 0
        total = end + 4 + length
        if len(self._buffer) < total:
            return None
        message, self._buffer = self._buffer[:total], self._buffer[total:]
        return message

    def recv(self, timeout_s: float = DEFAULT_WAIT_S) -> Reply | None:
        """The next response, parsed; None on silence or a closed connection."""
        data = self.recv_raw(timeout_s)
        if not data:
            return None
        return parse_reply(data)

    def final(self, timeout_s: float = DEFAULT_WAIT_S, call_id: str | None = None) -> Reply | None:
        """The next final (non-1xx) response, skipping provisional ones; None on silence.

        With `call_id`, responses of other calls (late retransmissions of an earlier final
        response, RFC 3261 §17.2.1) are skipped too.
        """
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            reply = self.recv(remaining)
            if reply is None:
                return None
            if call_id is not None and reply.header("Call-ID") not in (call_id, None):
                continue
            if reply.status > PROVISIONAL_MAX:
                return reply
        return None

    def request(
        self, method: str, timeout_s: float = DEFAULT_WAIT_S, **build: object
    ) -> Reply | None:
        """Send a built request and return its final response (None on silence)."""
        self.send(self.build(method, **build))  # type: ignore[arg-type]
        return self.final(timeout_s)

    def drain(self, quiet_s: float = 0.3) -> list[bytes]:
        """Read and return everything that arrives until `quiet_s` of silence."""
        received = []
        while (data := self.recv_raw(quiet_s)) is not None and data != b"":
            received.append(data)
        return received

    # -- registration ------------------------------------------------------------------------

    def register(
        self,
        user: str,
        password: str,
        *,
        expires_s: int = 300,
        dialogue: Dialogue | None = None,
        timeout_s: float = DEFAULT_WAIT_S,
    ) -> tuple[Reply | None, Reply | None]:
        """REGISTER `user`, answer the digest challenge; return (challenge, final answer)."""
        dialogue = dialogue or Dialogue()
        uri = f"sip:{self.server[0]}:{self.server[1]}"
        extra = [("Expires", str(expires_s))]
        challenge = self.request(
            "REGISTER", timeout_s, uri=uri, user=user, dialogue=dialogue, headers=extra
        )
        if challenge is None or challenge.status != 401:
            return challenge, None
        www = md5_challenge(challenge)
        authorization = digest_authorization(
            www, method="REGISTER", uri=uri, username=user, password=password
        )
        answer = self.request(
            "REGISTER",
            timeout_s,
            uri=uri,
            user=user,
            dialogue=dialogue,
            headers=[*extra, ("Authorization", authorization)],
        )
        return challenge, answer
