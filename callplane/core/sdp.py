"""SDP session descriptions (RFC 4566): parse, serialize, and read what offer/answer needs.

A `SessionDescription` keeps every line it does not model (i=, u=, e=, p=, b=, r=, z=, k= and
unknown attributes) as written, so `parse(bytes(sdp)) == sdp` and a description read from a peer
serializes back to the same bytes when the peer wrote its lines in the order of RFC 4566 §5.
Attributes stay in their order on the wire; the typed views (codecs, direction, ptime, rtcp) are
read from them, and `parse` checks the syntax of each of those it knows, naming the line at fault.
Offer/answer (RFC 3264) lives in `callplane.core.offer_answer`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, cast

from callplane.core.sip.errors import RemoteProtocolError

MAX_SDP_BYTES = 65_535  # an SDP body rides in one SIP message, itself at most one UDP datagram
MAX_PORT = 65_535  # a port is 16 bits (RFC 768)
MAX_PAYLOAD_TYPE = 127  # RFC 3550 §5.1: the payload type is a 7-bit field
SDP_VERSION = "0"  # RFC 4566 §5.1: there is no minor number
NO_SESSION_NAME = "-"  # RFC 4566 §5.3: "s=-" when a session has no meaningful name
BAD_SDP_STATUS = 400  # RFC 3261 §21.4.1: a body we cannot parse is the peer's fault

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: tuple[Direction, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")
DEFAULT_DIRECTION: Direction = "sendrecv"  # RFC 4566 §6 and RFC 3264 §5.1: when none is given

# RFC 4566 §5: the line types, in the order a session description puts them.
SESSION_LINE_ORDER = "vosiuepcbtrzkam"
_MEDIA_OTHER = frozenset("ibk")

# RFC 3551 §6, Table 4 and 5: static payload types, which need no a=rtpmap.
_STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1), 3: ("GSM", 8000, 1), 4: ("G723", 8000, 1), 5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1), 7: ("LPC", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1),
    10: ("L16", 44100, 2), 11: ("L16", 44100, 1), 12: ("QCELP", 8000, 1), 13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1), 15: ("G728", 8000, 1), 16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1), 18: ("G729", 8000, 1), 25: ("CelB", 90000, 1),
    26: ("JPEG", 90000, 1), 28: ("nv", 90000, 1), 31: ("H261", 90000, 1),
    32: ("MPV", 90000, 1), 33: ("MP2T", 90000, 1), 34: ("H263", 90000, 1),
}  # fmt: skip

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 4566 §9 token
_RTPMAP_RE = re.compile(r"([0-9]{1,3}) ([^/\s]+)/([0-9]{1,9})(?:/([0-9]{1,3}))?")
_FMTP_RE = re.compile(r"(\S+) ?(.*)")
_RTCP_RE = re.compile(r"([0-9]{1,5})(?: (\S+) (\S+) (\S+))?")
_DIGITS_RE = re.compile(r"[0-9]{1,20}")
_IPV4_LITERAL_RE = re.compile(r"[0-9.]+")


class SdpError(RemoteProtocolError):
    """An SDP body that is not well-formed: `line` is its 1-based number (None when the fault is
    in a description built in code) and `fault` says what is wrong with it."""

    def __init__(self, fault: str, line: int | None = None, status: int = BAD_SDP_STATUS) -> None:
        where = f"SDP line {line}" if line is not None else "SDP"
        super().__init__(f"{where}: {fault}", status)
        self.fault = fault
        self.line = line


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format as SDP names it (`a=rtpmap:<payload_type> <name>/<clock_rate>
    [/<channels>]` and `a=fmtp`, RFC 4566 §6); the same codec may carry other numbers elsewhere."""

    name: str
    clock_rate: int
    channels: int
    payload_type: int
    fmtp: str | None = None

    @property
    def rtpmap(self) -> str:
        """The encoding part of a=rtpmap; channels are written only when not 1 (RFC 4566 §6)."""
        rate = f"{self.name}/{self.clock_rate}"
        return rate if self.channels == 1 else f"{rate}/{self.channels}"

    def same_format(self, other: Codec) -> bool:
        """Whether both name the same encoding: name (case-insensitive, RFC 4855 §3), clock rate
        and channels; payload type numbers and fmtp may differ between the two sides."""
        return (
            self.name.casefold() == other.name.casefold()
            and self.clock_rate == other.clock_rate
            and self.channels == other.channels
        )

    def with_payload_type(self, payload_type: int, fmtp: str | None = None) -> Codec:
        """This codec under another payload type number (the peer's), with the given fmtp."""
        return Codec(self.name, self.clock_rate, self.channels, payload_type, fmtp)


@dataclass(frozen=True, slots=True)
class Line:
    """A line kept as written that this module does not model (i=, b=, k=, r=…): `letter` is its
    type, `value` what follows the "="."""

    letter: str
    value: str


@dataclass(frozen=True, slots=True)
class Attribute:
    """An a= line (RFC 4566 §5.13): a property attribute has no value (`a=rtcp-mux`), a value
    attribute has one (`a=ptime:20`)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class Connection:
    """A c= line (RFC 4566 §5.7): network type IN, IP4 or IP6, and the address (a literal or a
    host name; a multicast TTL or count stays in `address` as written)."""

    address: str
    address_type: Literal["IP4", "IP6"] = "IP4"
    network_type: str = "IN"

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """The c= line for a literal IPv6 address, an IPv4 address or a host name."""
        return cls(address, "IP6" if ":" in address else "IP4")

    @property
    def host(self) -> str:
        """The address without a multicast TTL or address count."""
        return self.address.split("/", 1)[0]

    @property
    def is_unspecified(self) -> bool:
        """0.0.0.0 (or ::): RFC 2543's way to put a call on hold, see RFC 3264 §8.4."""
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"{self.network_type} {self.address_type} {self.address}"


@dataclass(frozen=True, slots=True)
class Origin:
    """The o= line (RFC 4566 §5.2): the session id stays for the life of the session and the
    version grows with each new description (RFC 3264 §8)."""

    username: str
    session_id: int
    session_version: int
    connection: Connection

    def __str__(self) -> str:
        return f"{self.username} {self.session_id} {self.session_version} {self.connection}"


@dataclass(frozen=True, slots=True)
class RtcpAddress:
    """a=rtcp (RFC 3605): the port, and the address when it differs from the media's."""

    port: int
    connection: Connection | None = None


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One m= section (RFC 4566 §5.14) with its c=, attributes and other lines. `formats` are
    strings as on the wire; for RTP profiles they are payload type numbers (`payload_types`)."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    port_count: int | None = None
    other_lines: tuple[Line, ...] = ()

    @property
    def is_rtp(self) -> bool:
        """Whether the transport is an RTP profile (RTP/AVP, RTP/SAVPF, UDP/TLS/RTP/SAVPF…)."""
        return "RTP/" in self.proto

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The formats as payload type numbers (RTP profiles only; `parse` checked them)."""
        return tuple(int(f) for f in self.formats) if self.is_rtp else ()

    def attribute_values(self, name: str) -> list[str]:
        """The values of every a=<name>:value line, in order (names compare case-sensitively,
        as RFC 4566 §5.13 defines them)."""
        return [a.value for a in self.attributes if a.name == name and a.value is not None]

    def has_attribute(self, name: str) -> bool:
        """Whether some a=<name> line is present, with or without a value."""
        return any(a.name == name for a in self.attributes)

    @property
    def codecs(self) -> tuple[Codec, ...]:
        """The payload formats in the m= line's order (the sender's preference, RFC 3264 §5.1),
        named by a=rtpmap or by RFC 3551's static table; unnamed dynamic ones are left out."""
        rtpmaps: dict[int, tuple[str, int, int]] = {}
        fmtps: dict[int, str] = {}
        try:
            for value in self.attribute_values("rtpmap"):
                pt, name, rate, channels = _split_rtpmap(value)
                rtpmaps.setdefault(pt, (name, rate, channels))
            for value in self.attribute_values("fmtp"):
                fmt, params = _split_fmtp(value)
                if fmt.isdigit():
                    fmtps.setdefault(int(fmt), params)
        except _Fault as fault:
            raise SdpError(str(fault)) from None
        out: list[Codec] = []
        for pt in self.payload_types:
            named = rtpmaps.get(pt) or _STATIC_PAYLOAD_TYPES.get(pt)
            if named is not None:
                out.append(Codec(named[0], named[1], named[2], pt, fmtps.get(pt)))
        return tuple(out)

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute (RFC 4566 §6), or None when it has none."""
        for attribute in self.attributes:
            if attribute.value is None and attribute.name in DIRECTIONS:
                return attribute.name
        return None

    @property
    def ptime_ms(self) -> int | None:
        """a=ptime (RFC 4566 §6): the packet duration this side wants to receive."""
        values = self.attribute_values("ptime")
        return int(values[0]) if values and values[0].isdigit() else None

    @property
    def rtcp(self) -> RtcpAddress | None:
        """a=rtcp (RFC 3605), when the RTCP port is not the RTP port plus one."""
        values = self.attribute_values("rtcp")
        try:
            return _parse_rtcp(values[0]) if values else None
        except _Fault as fault:
            raise SdpError(str(fault)) from None

    @property
    def rtcp_mux(self) -> bool:
        """a=rtcp-mux (RFC 5761 §5.1.1): RTP and RTCP share the one port."""
        return self.has_attribute("rtcp-mux")

    def __bytes__(self) -> bytes:
        return "".join(f"{line}\r\n" for line in self._lines()).encode()

    def _lines(self) -> list[str]:
        port = self.port if self.port_count is None else f"{self.port}/{self.port_count}"
        lines = [f"m={self.media} {port} {self.proto} {' '.join(self.formats)}"]
        lines += _others(self.other_lines, "i")
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines += _others(self.other_lines, "bk")
        lines += [f"a={a}" for a in self.attributes]
        return lines


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body (RFC 4566 §5): origin, name, session-level c=, timing, attributes and
    media descriptions; build one in code or with `parse`, write it with `bytes()`."""

    origin: Origin
    session_name: str = NO_SESSION_NAME
    connection: Connection | None = None
    timing: tuple[tuple[int, int], ...] = ((0, 0),)
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    other_lines: tuple[Line, ...] = ()

    def connection_of(self, media: MediaDescription) -> Connection | None:
        """The c= that applies to a media description: its own, else the session's (§5.7)."""
        return media.connection if media.connection is not None else self.connection

    def direction_of(self, media: MediaDescription) -> Direction:
        """The direction of a media description: its own attribute, else the session-level one,
        else sendrecv (RFC 4566 §6, RFC 3264 §5.1)."""
        if media.direction is not None:
            return media.direction
        for attribute in self.attributes:
            if attribute.value is None and attribute.name in DIRECTIONS:
                return attribute.name
        return DEFAULT_DIRECTION

    def __bytes__(self) -> bytes:
        lines = [f"v={SDP_VERSION}", f"o={self.origin}", f"s={self.session_name}"]
        lines += _others(self.other_lines, "iuep")
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines += _others(self.other_lines, "b")
        lines += [f"t={start} {stop}" for start, stop in self.timing]
        lines += _others(self.other_lines, "rzk")
        lines += [f"a={a}" for a in self.attributes]
        for media in self.media:
            lines += media._lines()
        return "".join(f"{line}\r\n" for line in lines).encode()


def _others(lines: Iterable[Line], letters: str) -> list[str]:
    return [
        f"{line.letter}={line.value}"
        for letter in letters
        for line in lines
        if line.letter == letter
    ]


def parse(data: bytes) -> SessionDescription:
    """Parse an SDP body (RFC 4566 §5), CRLF or bare LF line ends; raise `SdpError` naming the
    line at fault. Unknown line types are refused, as §5 requires; unknown attributes are kept."""
    if len(data) > MAX_SDP_BYTES:
        raise SdpError(f"body of {len(data)} bytes exceeds {MAX_SDP_BYTES}")
    raw_lines = data.split(b"\n")
    while raw_lines and raw_lines[-1].strip(b"\r") == b"":
        raw_lines.pop()
    if not raw_lines:
        raise SdpError("empty body", 1)
    session = _SessionBuilder()
    for number, raw in enumerate(raw_lines, start=1):
        raw = raw.removesuffix(b"\r")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError("not UTF-8 text (RFC 4566 §5)", number) from exc
        try:
            session.add(text, number)
        except _Fault as fault:
            raise SdpError(str(fault), number) from None
    return session.build(len(raw_lines))


class _Fault(Exception):
    """A fault in the line being parsed; `parse` adds the line number."""


class _MediaBuilder:
    def __init__(self, line: str, number: int) -> None:
        self.number = number
        parts = line.split()
        if len(parts) < 4:
            raise _Fault("m= needs <media> <port> <proto> <fmt>... (RFC 4566 §5.14)")
        self.media = parts[0]
        port_text, slash, count_text = parts[1].partition("/")
        self.port = _port(port_text, "m= port")
        self.port_count = _int(count_text, "m= port count") if slash else None
        self.proto = parts[2]
        self.formats = tuple(parts[3:])
        if not _TOKEN_RE.fullmatch(self.media) or not self.proto:
            raise _Fault(f"bad media or proto in m= line: {line!r}")
        if "RTP/" in self.proto:
            for fmt in self.formats:
                if not fmt.isdigit() or int(fmt) > MAX_PAYLOAD_TYPE:
                    raise _Fault(f"payload type {fmt!r} is not 0-{MAX_PAYLOAD_TYPE}")
        elif any(not f for f in self.formats):
            raise _Fault("empty format in m= line")
        self.connection: Connection | None = None
        self.attributes: list[Attribute] = []
        self.other: list[Line] = []

    def build(self) -> MediaDescription:
        return MediaDescription(
            self.media,
            self.port,
            self.proto,
            self.formats,
            self.connection,
            tuple(self.attributes),
            self.port_count,
            tuple(self.other),
        )


class _SessionBuilder:
    def __init__(self) -> None:
        self.origin: Origin | None = None
        self.name: str | None = None
        self.connection: Connection | None = None
        self.timing: list[tuple[int, int]] = []
        self.attributes: list[Attribute] = []
        self.other: list[Line] = []
        self.media: list[_MediaBuilder] = []

    def add(self, text: str, number: int) -> None:
        if len(text) < 2 or text[1] != "=" or not ("a" <= text[0] <= "z"):
            raise _Fault(f"not a <type>=<value> line: {text[:40]!r}")
        letter, value = text[0], text[2:]
        if number == 1:
            if letter != "v" or value != SDP_VERSION:
                raise _Fault(f"first line must be v={SDP_VERSION} (RFC 4566 §5.1)")
            return
        if letter not in SESSION_LINE_ORDER:
            raise _Fault(f"unknown line type {letter!r} (RFC 4566 §5)")
        if letter == "m":
            self.media.append(_MediaBuilder(value, number))
        elif self.media:
            self._add_media_line(self.media[-1], letter, value)
        elif letter == "v":
            raise _Fault("v= appears twice")
        elif letter == "o":
            if self.origin is not None:
                raise _Fault("o= appears twice")
            self.origin = _parse_origin(value)
        elif letter == "s":
            if self.name is not None:
                raise _Fault("s= appears twice")
            self.name = value
        elif letter == "c":
            if self.connection is not None:
                raise _Fault("c= appears twice at session level")
            self.connection = _parse_connection(value)
        elif letter == "t":
            self.timing.append(_parse_timing(value))
        elif letter == "a":
            self.attributes.append(_parse_attribute(value))
        else:
            self.other.append(Line(letter, value))

    @staticmethod
    def _add_media_line(media: _MediaBuilder, letter: str, value: str) -> None:
        if letter == "c":
            if media.connection is not None:
                raise _Fault("c= appears twice in one media description")
            media.connection = _parse_connection(value)
        elif letter == "a":
            media.attributes.append(_parse_attribute(value))
        elif letter in _MEDIA_OTHER:
            media.other.append(Line(letter, value))
        else:
            raise _Fault(f"{letter}= is not allowed in a media description (RFC 4566 §5)")

    def build(self, line_count: int) -> SessionDescription:
        if self.origin is None:
            raise SdpError("o= line missing (RFC 4566 §5.2)", line_count)
        if self.name is None:
            raise SdpError("s= line missing (RFC 4566 §5.3)", line_count)
        if not self.timing:
            raise SdpError("t= line missing (RFC 4566 §5.9)", line_count)
        for media in self.media:
            if media.connection is None and self.connection is None:
                raise SdpError("no c= for this media nor for the session (§5.7)", media.number)
        return SessionDescription(
            self.origin,
            self.name,
            self.connection,
            tuple(self.timing),
            tuple(self.attributes),
            tuple(m.build() for m in self.media),
            tuple(self.other),
        )


def _int(text: str, what: str) -> int:
    if not _DIGITS_RE.fullmatch(text):
        raise _Fault(f"{what} is not a number: {text!r}")
    return int(text)


def _port(text: str, what: str) -> int:
    port = _int(text, what)
    if port > MAX_PORT:
        raise _Fault(f"{what} {port} exceeds {MAX_PORT}")
    return port


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise _Fault("c= needs <nettype> <addrtype> <address> (RFC 4566 §5.7)")
    network_type, address_type, address = parts
    if network_type != "IN":
        raise _Fault(f"network type {network_type!r} is not IN")
    if address_type not in ("IP4", "IP6"):
        raise _Fault(f"address type {address_type!r} is neither IP4 nor IP6")
    host = address.split("/", 1)[0]
    if not host:
        raise _Fault("empty connection address")
    try:
        if address_type == "IP4" and ":" in host:
            raise _Fault(f"IPv6 address {host!r} given as IP4")
        if address_type == "IP4" and _IPV4_LITERAL_RE.fullmatch(host):
            ipaddress.IPv4Address(host)
        elif address_type == "IP6" and ":" in host:
            ipaddress.IPv6Address(host)
    except ipaddress.AddressValueError as exc:
        raise _Fault(f"bad {address_type} address {host!r}") from exc
    return Connection(address, cast(Literal["IP4", "IP6"], address_type), network_type)


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise _Fault("o= needs 6 fields: username sess-id sess-version nettype addrtype address")
    username, session_id, version = parts[:3]
    if not username:
        raise _Fault("empty o= username")
    connection = _parse_connection(" ".join(parts[3:]))
    return Origin(username, _int(session_id, "sess-id"), _int(version, "sess-version"), connection)


def _parse_timing(value: str) -> tuple[int, int]:
    parts = value.split()
    if len(parts) != 2:
        raise _Fault("t= needs <start-time> <stop-time> (RFC 4566 §5.9)")
    return _int(parts[0], "start time"), _int(parts[1], "stop time")


def _parse_attribute(value: str) -> Attribute:
    name, colon, attr_value = value.partition(":")
    if not _TOKEN_RE.fullmatch(name):
        raise _Fault(f"bad attribute name {name!r} (RFC 4566 §5.13)")
    if not colon:
        if name in ("rtpmap", "fmtp", "ptime", "rtcp"):
            raise _Fault(f"a={name} needs a value")
        return Attribute(name)
    if name in DIRECTIONS or name == "rtcp-mux":
        raise _Fault(f"a={name} takes no value")
    if name == "rtpmap":
        _split_rtpmap(attr_value)
    elif name == "fmtp":
        _split_fmtp(attr_value)
    elif name == "ptime":
        if _int(attr_value, "a=ptime") == 0:
            raise _Fault("a=ptime must be positive")
    elif name == "rtcp":
        _parse_rtcp(attr_value)
    return Attribute(name, attr_value)


def _split_rtpmap(value: str) -> tuple[int, str, int, int]:
    match = _RTPMAP_RE.fullmatch(value)
    if match is None or int(match[1]) > MAX_PAYLOAD_TYPE:
        raise _Fault(f"a=rtpmap needs <payload type> <encoding>/<clock rate>: {value!r}")
    channels = int(match[4]) if match[4] else 1
    return int(match[1]), match[2], int(match[3]), channels


def _split_fmtp(value: str) -> tuple[str, str]:
    match = _FMTP_RE.fullmatch(value)
    if match is None:
        raise _Fault(f"a=fmtp needs <format> <parameters>: {value!r}")
    return match[1], match[2]


def _parse_rtcp(value: str) -> RtcpAddress:
    match = _RTCP_RE.fullmatch(value)
    if match is None:
        raise _Fault(f"a=rtcp needs <port> [<nettype> <addrtype> <address>]: {value!r}")
    port = _port(match[1], "a=rtcp port")
    if match[2] is None:
        return RtcpAddress(port)
    return RtcpAddress(port, _parse_connection(f"{match[2]} {match[3]} {match[4]}"))
