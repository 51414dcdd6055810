"""SIP messages (RFC 3261 §7): parse bytes into a Request or Response, and serialize them back.

`parse` takes one whole message (a UDP datagram); `StreamParser` frames messages out of a TCP/TLS
byte stream by Content-Length (RFC 3261 §18.3). Header lines are kept as text in order; the
structured values every layer needs (Via, From, To, CSeq, Contact, Request-URI) are checked once at
parse time and cached, so a malformed message is refused at the edge with a reason naming the fault.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from callplane.core.sip.errors import LocalProtocolError, SipParseError
from callplane.core.sip.headers import (
    _CANONICAL,
    CSeq,
    Headers,
    NameAddr,
    Via,
    _canon,
    parse_contacts,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from callplane.core.sip.uri import UNSUPPORTED_SCHEME_STATUS, SipUri, parse_uri

MAX_MESSAGE_BYTES = 65_535  # the largest UDP datagram; Kamailio's BUF_SIZE is the same order
MESSAGE_TOO_LARGE = 513  # RFC 3261 §21.5.9: Message Too Large
VERSION_NOT_SUPPORTED = 505  # RFC 3261 §21.5.6
MAX_MAX_FORWARDS = 255  # RFC 3261 §20.22: Max-Forwards is 0-255
MAX_NUMBER_DIGITS = 10  # longest decimal we read (2**32 - 1); guards int() against huge inputs
SIP_VERSION = "SIP/2.0"

_REQUIRED_REQUEST = ("to", "from", "cseq", "call-id", "via")  # RFC 3261 §8.1.1 (Max-Forwards
_REQUIRED_RESPONSE = ("to", "from", "cseq", "call-id", "via")  # is let off, as RFC 2543 had none)
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_VERSION_RE = re.compile(r"SIP/([0-9]{1,5}\.[0-9]{1,5})", re.IGNORECASE)
_STREAM_CL_RE = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service", 400: "Bad Request",
    401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required",
    408: "Request Timeout", 410: "Gone", 412: "Conditional Request Failed",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 433: "Anonymity Disallowed",
    436: "Bad Identity-Info", 437: "Unsupported Certificate", 438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support", 440: "Max-Breadth Exceeded",
    469: "Bad Info Package", 470: "Consent Needed", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}  # fmt: skip
_CLASS_REASONS = {
    1: "Provisional", 2: "Success", 3: "Redirection", 4: "Client Error", 5: "Server Error",
    6: "Global Failure",
}  # fmt: skip


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise SipParseError(f"missing {name}")
    return value


def _parse_vias(headers: Headers) -> list[Via]:
    return [parse_via(v) for v in headers.values("via")]


def _parse_from(headers: Headers) -> NameAddr:
    return _name_addr(headers, "From")


def _parse_to(headers: Headers) -> NameAddr:
    return _name_addr(headers, "To")


def _name_addr(headers: Headers, name: str) -> NameAddr:
    try:
        return parse_name_addr(_required(headers, name))
    except SipParseError as exc:
        if exc.reason.startswith("missing"):
            raise
        raise SipParseError(f"bad {name} header: {exc.reason}", exc.status) from None


def _parse_cseq(headers: Headers) -> CSeq:
    return parse_cseq(_required(headers, "CSeq"))


def _parse_contact(headers: Headers) -> list[NameAddr] | Literal["*"]:
    try:
        return parse_contacts(headers.values("contact"))
    except SipParseError as exc:
        raise SipParseError(f"bad Contact header: {exc.reason}", exc.status) from None


class _HeaderAccess:
    """Typed views of the headers every layer reads, parsed once and cached in `headers`."""

    __slots__ = ()
    headers: Headers

    @property
    def call_id(self) -> str:
        """The Call-ID (RFC 3261 §20.8)."""
        return _required(self.headers, "Call-ID")

    @property
    def cseq(self) -> CSeq:
        """The CSeq (RFC 3261 §20.16)."""
        return self.headers.cached("cseq", _parse_cseq)

    @property
    def via(self) -> list[Via]:
        """All Via values, top first (RFC 3261 §20.42)."""
        return list(self.headers.cached("via", _parse_vias))

    @property
    def from_(self) -> NameAddr:
        """The From value (RFC 3261 §20.20)."""
        return self.headers.cached("from", _parse_from)

    @property
    def to(self) -> NameAddr:
        """The To value (RFC 3261 §20.39)."""
        return self.headers.cached("to", _parse_to)

    @property
    def contacts(self) -> list[NameAddr] | Literal["*"]:
        """All Contact values, or "*" (RFC 3261 §20.10); an empty list when there is none."""
        result = self.headers.cached("contact", _parse_contact)
        return result if result == "*" else list(result)

    def replace_top_via(self, via: Via) -> None:
        """Replace the top Via value (RFC 3261 §18.2.1 received / RFC 3581 rport stamping)."""
        self.headers.remove_first("Via")
        self.headers.prepend("Via", str(via))


def _serialize(start: str, headers: Headers, body: bytes) -> bytes:
    length = str(len(body))
    if headers.get("content-length") != length:
        headers.set("Content-Length", length)
    return b"".join(
        (start.encode("utf-8", "surrogateescape"), b"\r\n", headers.wire(), b"\r\n", body)
    )


@dataclass(slots=True, eq=True)
class Request(_HeaderAccess):
    """A SIP request (RFC 3261 §7.1). `uri` is the Request-URI as written."""

    method: str
    uri: str
    headers: Headers
    body: bytes = b""
    version: str = SIP_VERSION
    _ruri: tuple[str, SipUri] | None = field(default=None, repr=False, compare=False)

    def __bytes__(self) -> bytes:
        """The wire form; Content-Length is set to the body's length first (RFC 3261 §20.14)."""
        return _serialize(f"{self.method} {self.uri} {self.version}", self.headers, self.body)

    @property
    def request_uri(self) -> SipUri:
        """The Request-URI parsed (cached while `uri` is unchanged)."""
        cached = self._ruri
        if cached is not None and cached[0] is self.uri:
            return cached[1]
        parsed = parse_uri(self.uri)
        self._ruri = (self.uri, parsed)
        return parsed

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (RFC 3261 §20.22), None if absent (RFC 2543 peers)."""
        value = self.headers.get("Max-Forwards")
        return None if value is None else _max_forwards(value)


@dataclass(slots=True, eq=True)
class Response(_HeaderAccess):
    """A SIP response (RFC 3261 §7.2)."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = SIP_VERSION

    def __bytes__(self) -> bytes:
        """The wire form; Content-Length is set to the body's length first (RFC 3261 §20.14)."""
        return _serialize(f"{self.version} {self.status} {self.reason}", self.headers, self.body)


Message = Request | Response


def _version(text: str) -> str:
    if text == SIP_VERSION or text.upper() == SIP_VERSION:
        return SIP_VERSION
    m = _VERSION_RE.fullmatch(text)
    if m is not None:
        raise SipParseError(f"SIP version {m.group(1)} not supported", VERSION_NOT_SUPPORTED)
    raise SipParseError(f"bad SIP version {text[:20]!r}")


def _number(name: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_NUMBER_DIGITS:
        raise SipParseError(f"invalid {name} {text[:20]!r}")
    return int(text)


def _max_forwards(text: str) -> int:
    value = _number("Max-Forwards", text)
    if value > MAX_MAX_FORWARDS:
        raise SipParseError(f"invalid Max-Forwards {value}: above {MAX_MAX_FORWARDS}")
    return value


def _check_deferring_scheme(
    headers: Headers, key: str, parser: Callable[[Headers], object]
) -> None:
    """Parse now and cache; a well-formed URI of a scheme we do not serve (RFC 4475 §3.3.4) is
    left to the layer that reads it, which gets the 416 error then."""
    try:
        headers.cached(key, parser)
    except SipParseError as exc:
        if exc.status != UNSUPPORTED_SCHEME_STATUS:
            raise


def parse(data: bytes) -> Message:
    """Parse one complete message (a datagram) into a Request or Response.

    Leading CRLFs are skipped (RFC 3261 §7.5); a body longer than Content-Length is cut, a shorter
    one is an error (§18.3); without Content-Length the body runs to the end of the datagram.
    Raises SipParseError whose reason names the fault and whose status is what to answer.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(
            f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}", MESSAGE_TOO_LARGE
        )
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipParseError("no empty line after the headers")
    head = data[:end].decode("utf-8", "surrogateescape")
    lines = head.split("\r\n")
    crlf = len(lines) - 1
    if head.count("\r") != crlf or head.count("\n") != crlf:
        raise SipParseError("bare CR or LF in the message head")
    start = lines[0]
    message: Message
    if start[:4].upper() == "SIP/":
        parts = start.split(" ", 2)
        if len(parts) < 2:
            raise SipParseError(f"bad status line {start[:60]!r}")
        version = _version(parts[0])
        code = parts[1]
        if not (len(code) == 3 and code.isascii() and code.isdigit() and "1" <= code[0] <= "6"):
            raise SipParseError(f"bad status line: status code {code[:20]!r}")
        headers = Headers.parse_lines(lines[1:])
        message = Response(int(code), parts[2] if len(parts) == 3 else "", headers, b"", version)
        required = _REQUIRED_RESPONSE
    else:
        parts = start.split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise SipParseError(f"bad request line {start[:60]!r}")
        method, uri, version_text = parts
        if not _TOKEN_RE.fullmatch(method):
            raise SipParseError(f"bad request line: method {method[:40]!r}")
        version = _version(version_text)
        try:
            ruri = parse_uri(uri)
        except SipParseError as exc:
            raise SipParseError(f"bad Request-URI: {exc.reason}", exc.status) from None
        if ruri.headers:
            raise SipParseError("Request-URI must not contain headers (RFC 3261 §19.1.1)")
        headers = Headers.parse_lines(lines[1:])
        message = Request(method, uri, headers, b"", version, (uri, ruri))
        required = _REQUIRED_REQUEST

    for key in required:
        if key not in headers:
            raise SipParseError(f"missing {_CANONICAL[key][1]}")
    cseq = headers.cached("cseq", _parse_cseq)
    if isinstance(message, Request):
        if cseq.method != message.method:
            raise SipParseError(
                f"CSeq method {cseq.method[:40]!r} does not match request method"
                f" {message.method[:40]!r}"
            )
        max_forwards = headers.get("max-forwards")
        if max_forwards is not None:
            _max_forwards(max_forwards)
    call_id = headers.get("call-id") or ""
    if not call_id or " " in call_id or "\t" in call_id:
        raise SipParseError(f"invalid Call-ID {call_id[:40]!r}")
    headers.cached("via", _parse_vias)
    _check_deferring_scheme(headers, "from", _parse_from)
    _check_deferring_scheme(headers, "to", _parse_to)
    if "contact" in headers:
        _check_deferring_scheme(headers, "contact", _parse_contact)

    rest = data[end + 4 :]
    length_text = headers.get("content-length")
    if length_text is None:
        message.body = rest
    else:
        length = _number("Content-Length", length_text)
        if length > len(rest):
            raise SipParseError(f"Content-Length {length} larger than body {len(rest)}")
        message.body = rest if length == len(rest) else rest[:length]
    return message


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to `request` per RFC 3261 §8.2.6: Via (all), From, To (with `to_tag` added when
    it has none), Call-ID and CSeq copied; Timestamp copied into a 100 (§8.2.6.1)."""
    source = request.headers
    lines = [("via", "Via", via) for via in source.get_all("via")]
    lines += [
        ("from", "From", source.get("from") or ""),
        ("to", "To", _to_with_tag(source.get("to") or "", to_tag, request)),
        ("call-id", "Call-ID", source.get("call-id") or ""),
        ("cseq", "CSeq", source.get("cseq") or ""),
    ]
    if status == 100:
        timestamp = source.get("timestamp")
        if timestamp is not None:
            lines.append(("timestamp", "Timestamp", timestamp))
    out = Headers._from_lines(lines)
    for name, value in headers:
        out.add(name, value)
    response = Response(status, reason if reason is not None else default_reason(status), out, body)
    out.set("Content-Length", str(len(body)))
    return response


def _to_with_tag(to: str, tag: str | None, request: Request | None = None) -> str:
    """`to` with `;tag=tag` added unless it has a tag; `request`, when given, is where `to` is
    from, and its cached To is read instead of parsing `to` again."""
    if tag is None:
        return to
    try:
        if (request.to if request is not None else parse_name_addr(to)).tag is not None:
            return to
    except SipParseError:
        if ";tag=" in to.replace(" ", "").lower():
            return to
    if "\r" in tag or "\n" in tag:
        raise LocalProtocolError("header To value contains CR or LF")
    return f"{to};tag={tag}".rstrip(" \t")


def default_reason(status: int) -> str:
    """The standard reason phrase for `status`, or its class name (RFC 3261 §21)."""
    return REASONS.get(status) or _CLASS_REASONS.get(status // 100, "Unknown")


def make_error_response(
    data: bytes, error: SipParseError, *, to_tag: str | None = None
) -> Response | None:
    """The response to a request `parse` refused: `error.status` with its reason as the phrase,
    built from the raw Via, From, To, Call-ID and CSeq lines (RFC 3261 §8.2.6, §16.3).

    None when no response can be formed: a response or ACK was received (§17.2.1), or the lines a
    response must echo are missing, in which case the message is dropped (§18.2.1 has no way back).
    """
    text = data.lstrip(b"\r\n")
    end = text.find(b"\r\n\r\n")
    head = (text if end < 0 else text[:end]).decode("utf-8", "surrogateescape")
    lines = head.replace("\r\n", "\n").split("\n")
    start = lines[0].split(" ")
    if lines[0][:4].upper() == "SIP/" or not start[0] or start[0] == "ACK":
        return None
    raw: dict[str, list[str]] = {}
    last: str | None = None
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and last is not None:
            raw[last][-1] += " " + line.strip(" \t")
            continue
        name, colon, value = line.partition(":")
        if not colon:
            last = None
            continue
        last = _canon(name.strip(" \t"))[0]
        raw.setdefault(last, []).append(value.strip(" \t"))
    needed = ("via", "from", "to", "call-id", "cseq")
    if any(not raw.get(key) for key in needed):
        return None
    try:
        out = Headers()
        for value in raw["via"]:
            out.add("Via", value)
        out.add("From", raw["from"][0])
        out.add("To", _to_with_tag(raw["to"][0], to_tag))
        out.add("Call-ID", raw["call-id"][0])
        out.add("CSeq", raw["cseq"][0])
        out.add("Content-Length", "0")
    except LocalProtocolError:
        return None
    reason = _CONTROL_RE.sub(" ", error.reason)
    return Response(error.status, reason, out)


class StreamMessageError(SipParseError):
    """A message framed on a stream that did not parse; `data` is its bytes, for an answer."""

    def __init__(self, reason: str, status: int, data: bytes) -> None:
        super().__init__(reason, status)
        self.data = data


class StreamParser:
    """Frames messages on a stream transport (TCP) by Content-Length (required there, RFC 3261
    §18.3). A message without Content-Length is framed as bodiless and reported as an error."""

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_message_bytes

    def feed(self, data: bytes) -> list[Message | SipParseError]:
        """The messages completed by `data`, in order; a bad one is returned as its error.

        CRLF keep-alives between messages (RFC 5626 §3.5.1) are skipped. Raises SipParseError when
        the stream can no longer be framed (bad or conflicting Content-Length, oversize message):
        the caller then closes the connection.
        """
        buffer = self._buffer
        buffer += data
        out: list[Message | SipParseError] = []
        while buffer:
            if buffer[0] in (13, 10):
                skip = len(buffer) - len(buffer.lstrip(b"\r\n"))
                del buffer[:skip]
                if not buffer:
                    break
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self._max:
                    raise SipParseError(
                        f"message head exceeds {self._max} bytes", MESSAGE_TOO_LARGE
                    )
                break
            head_len = end + 4
            length = self._content_length(bytes(buffer[:end]))
            total = head_len + (length or 0)
            if total > self._max:
                raise SipParseError(
                    f"message of {total} bytes exceeds {self._max}", MESSAGE_TOO_LARGE
                )
            if len(buffer) < total:
                break
            frame = bytes(buffer[:total])
            del buffer[:total]
            if length is None:
                out.append(
                    StreamMessageError(
                        "missing Content-Length on a stream transport (RFC 3261 §18.3)", 400, frame
                    )
                )
                continue
            try:
                out.append(parse(frame))
            except SipParseError as exc:
                out.append(StreamMessageError(exc.reason, exc.status, frame))
        return out

    @staticmethod
    def _content_length(head: bytes) -> int | None:
        found = {m.strip(b" \t") for m in _STREAM_CL_RE.findall(b"\r\n" + head)}
        if not found:
            return None
        if len(found) > 1:
            raise SipParseError("conflicting Content-Length headers; stream cannot be framed")
        text = found.pop()
        if not text.isdigit() or len(text) > MAX_NUMBER_DIGITS:
            raise SipParseError(f"invalid Content-Length {text[:20]!r}; stream cannot be framed")
        return int(text)


__all__ = [
    "MAX_MESSAGE_BYTES",
    "REASONS",
    "Headers",
    "Message",
    "Request",
    "Response",
    "StreamMessageError",
    "StreamParser",
    "default_reason",
    "make_error_response",
    "make_response",
    "parse",
]
