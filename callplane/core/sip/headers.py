"""Structured SIP header values: Via, name-addr (From/To/Contact/Route), CSeq, digest.

Grammar from RFC 3261 §25.1; each parser takes one header value (already unfolded) and raises
SipParseError naming the fault. Header parameters are lexed by `params` (re-exported here) and
kept as written (quoted strings keep their quotes) so that serializing gives back an equal value.
The usual forms are matched by one regex each; the rest, and every fault, take the general path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

from callplane.core.sip.errors import LocalProtocolError, SipParseError
from callplane.core.sip.params import QUOTED as _QUOTED
from callplane.core.sip.params import TOKEN as _TOKEN
from callplane.core.sip.params import find_param as _find_param
from callplane.core.sip.params import parse_params, quote, split_values, unquote
from callplane.core.sip.params import set_params as _set_params
from callplane.core.sip.uri import (
    MAX_PORT,
    Params,
    SipUri,
    format_params,
    parse_uri,
    split_plain_params,
)

T = TypeVar("T")
MAX_CSEQ = 2**31  # RFC 3261 §8.1.1.5: the CSeq sequence number MUST be less than 2**31

_TOKEN_RE = re.compile(_TOKEN)
_QUOTED_RE = re.compile(_QUOTED)
_DISPLAY_TOKENS_RE = re.compile(rf"{_TOKEN}(?:[ \t]+{_TOKEN})*")
# The usual name-addr forms, `"Name" <uri>;p=v` (no escapes), `Name <uri>` and `<uri>`, with
# plain parameters; anything else takes the general path, which also names the fault.
_PLAIN_NAME_ADDR_RE = re.compile(
    rf'(?:"([^"\\]*)"[ \t]*|({_TOKEN}(?:[ \t]+{_TOKEN})*)[ \t]*)?<([^\s<>"]+)>'
    rf"((?:;{_TOKEN}(?:=[^\s;,\"=<>]+)?)*)"
)
_VIA_RE = re.compile(
    rf"SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*({_TOKEN})[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
    r"((?:[ \t]*;[\s\S]*)?)",
    re.IGNORECASE,
)
# The usual Via, `SIP/2.0/UDP host:port;p=v;flag`, without LWS or quoted parameter values.
_PLAIN_VIA_RE = re.compile(
    rf"SIP/2\.0/({_TOKEN}) ([A-Za-z0-9\-_.]+)(?::([0-9]{{1,5}}))?"
    rf"((?:;{_TOKEN}(?:=[^\s;,\"=<>]+)?)*)"
)
_CSEQ_RE = re.compile(rf"([0-9]{{1,10}})[ \t]+({_TOKEN})")
_AUTH_SCHEME_RE = re.compile(rf"[ \t]*({_TOKEN})(?:[ \t]+|$)")
_AUTH_PARAM_RE = re.compile(rf"[ \t]*({_TOKEN})[ \t]*=[ \t]*({_QUOTED}|[^\s,\"]+)[ \t]*(?:,|$)")


# Canonical names by lower-case name, compact forms included (RFC 3261 §7.3.3, RFC 3265 §7.2,
# RFC 3515 §2.1, RFC 3892 §7, RFC 4028 §4, RFC 3841 §10, RFC 4474 §8).
_CANONICAL_NAMES = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Identity",
    "Identity-Info", "In-Reply-To", "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version",
    "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority", "Privacy",
    "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Replaces", "Reply-To",
    "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Server", "Service-Route",
    "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State", "Supported",
    "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
]  # fmt: skip
_COMPACT_FORMS = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact", "k": "Supported",
    "l": "Content-Length", "m": "Contact", "n": "Identity-Info", "o": "Event", "r": "Refer-To",
    "s": "Subject", "t": "To", "u": "Allow-Events", "v": "Via", "x": "Session-Expires",
    "y": "Identity",
}  # fmt: skip
_CANONICAL: dict[str, tuple[str, str]] = {n.lower(): (n.lower(), n) for n in _CANONICAL_NAMES}
_CANONICAL.update({c: (n.lower(), n) for c, n in _COMPACT_FORMS.items()})

# RFC 3261 §7.3.1: these may appear once only; a second one makes the message ambiguous.
_SINGLE_VALUE = frozenset({"call-id", "cseq", "from", "to", "max-forwards", "content-length"})
_TRACKED = _SINGLE_VALUE | {"via"}
# Headers whose lines are comma-separated lists (RFC 3261 §7.3.1); remove_first pops one value.
_LIST_HEADERS = frozenset({
    "via", "route", "record-route", "contact", "path", "service-route", "allow", "supported",
    "require", "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
    "allow-events", "content-encoding", "content-language", "in-reply-to", "alert-info",
    "call-info", "error-info", "p-asserted-identity",
})  # fmt: skip

# Every spelling of a known name that peers and our own code write, to its (key, canonical name):
# canonical, lower-case and compact forms, so the usual lookup is one dict probe.
_SPELLINGS: dict[str, tuple[str, str]] = {}
for _known in _CANONICAL.values():
    _SPELLINGS[_known[1]] = _SPELLINGS[_known[0]] = _known
for _compact, _name in _COMPACT_FORMS.items():
    _SPELLINGS[_compact] = _SPELLINGS[_compact.upper()] = _CANONICAL[_name.lower()]


def _canon(name: str) -> tuple[str, str]:
    """(lookup key, name to write): compact and any-case forms of known names become canonical."""
    known = _SPELLINGS.get(name)
    if known is None:
        known = _CANONICAL.get(name.lower())
        if known is None:
            return (name.lower(), name)
    return known


def _key(name: str) -> str:
    known = _SPELLINGS.get(name)
    return known[0] if known is not None else _canon(name)[0]


_MISSING = object()  # not yet in Headers._cache (a parser may return None)


def _check_value(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(f"header {name} value contains CR or LF")
    return value.strip(" \t")


class Headers:
    """Ordered, case-insensitive multi-map of header lines. Compact forms (i, m, e, l, f, t, v, s,
    k, c, o, u, r, x, a, j, b, d, y, n) are expanded to canonical full names (Call-ID, Contact,
    Content-Encoding, Content-Length, From, To, Via, Subject, Supported, Content-Type, Event,
    Allow-Events, Refer-To, Session-Expires, Accept-Contact, Reject-Contact, Referred-By,
    Request-Disposition, Identity, Identity-Info), as RFC 3261 §7.3.3 makes them equivalent.

    Lines are kept in order for serializing and indexed by key for lookups; the wire form of the
    lines is kept until one changes, so a retransmitted message costs a join at most."""

    __slots__ = ("_cache", "_index", "_items", "_wire")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []  # (lower-case key, name, value)
        self._index: dict[str, list[str]] = {}  # values by key, in line order
        self._cache: dict[str, object] = {}  # parsed values by key, dropped when lines change
        self._wire: bytes | None = None  # the lines serialized, dropped when lines change
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_lines(cls, items: list[tuple[str, str, str]]) -> Headers:
        headers = cls.__new__(cls)
        headers._items = items
        headers._cache = {}
        headers._wire = None
        headers._reindex()
        return headers

    def _reindex(self) -> None:
        index: dict[str, list[str]] = {}
        for k, _, v in self._items:
            values = index.get(k)
            if values is None:
                index[k] = [v]
            else:
                values.append(v)
        self._index = index

    @classmethod
    def parse_lines(cls, lines: list[str]) -> Headers:
        """Headers from the lines after a start line, unfolding continuation lines (RFC 3261
        §7.3.1); a second line of a single-value header (Call-ID, CSeq...) is an error."""
        items: list[tuple[str, str, str]] = []
        index: dict[str, list[str]] = {}
        spelling = _SPELLINGS.get
        for line in lines:
            name, colon, value = line.partition(":")
            known = spelling(name)
            if known is None:
                if line[:1] in (" ", "\t"):
                    if not items:
                        raise SipParseError("continuation line before the first header")
                    more = line.strip(" \t")
                    if more:
                        k, n, v = items[-1]
                        v = f"{v} {more}" if v else more
                        items[-1] = (k, n, v)
                        index[k][-1] = v
                    continue
                if not colon:
                    raise SipParseError(f"bad header line {line[:60]!r}")
                name = name.rstrip(" \t")
                known = _CANONICAL.get(name.lower())
                if known is None:
                    if not _TOKEN_RE.fullmatch(name):
                        raise SipParseError(f"bad header name {name[:60]!r}")
                    known = (name.lower(), name)
            key = known[0]
            value = value.strip(" \t")
            values = index.get(key)
            if values is None:
                index[key] = [value]
            elif key in _SINGLE_VALUE:
                raise SipParseError(f"multiple {known[1]} headers")
            else:
                values.append(value)
            items.append((key, known[1], value))
        headers = cls.__new__(cls)
        headers._items = items
        headers._index = index
        headers._cache = {}
        headers._wire = None
        return headers

    def cached(self, key: str, parser: Callable[[Headers], T]) -> T:
        """`parser(self)`, computed once and kept until a line of `key` changes."""
        value = self._cache.get(key, _MISSING)
        if value is _MISSING:
            value = self._cache[key] = parser(self)
        return cast(T, value)

    def _changed(self, key: str) -> None:
        self._cache.pop(key, None)
        self._wire = None

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first line's value, or `default`."""
        known = _SPELLINGS.get(name)
        values = self._index.get(known[0] if known is not None else _canon(name)[0])
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every line's value, in order, not split on commas."""
        return list(self._index.get(_key(name), ()))

    def values(self, name: str) -> list[str]:
        """Every value of a list header (Via, Contact, Route, Allow...), lines split on
        top-level commas. Not for headers whose values hold bare commas (Date, WWW-Authenticate)."""
        lines = self._index.get(_key(name))
        if not lines:
            return []
        if len(lines) == 1:
            return split_values(lines[0])
        out: list[str] = []
        for v in lines:
            out += split_values(v)
        return out

    def set(self, name: str, value: str) -> None:
        """Replace all lines of `name` by one line where the first was (else at the end)."""
        key, display = _canon(name)
        _check_name(name)
        line = (key, display, _check_value(name, value))
        items = self._items
        if key in self._index:
            for i, (k, _, _) in enumerate(items):
                if k == key:
                    self._items = items[:i] + [line] + [it for it in items[i + 1 :] if it[0] != key]
                    break
        else:
            items.append(line)
        self._index[key] = [line[2]]
        self._changed(key)

    def add(self, name: str, value: str) -> None:
        """Append a line."""
        known = _SPELLINGS.get(name)
        if known is None:
            known = _canon(name)
            _check_name(name)
        key, display = known
        line = (key, display, _check_value(name, value))
        self._items.append(line)
        values = self._index.get(key)
        if values is None:
            self._index[key] = [line[2]]
        else:
            values.append(line[2])
        self._changed(key)

    def prepend(self, name: str, value: str) -> None:
        """Insert a line before the first line of `name`, or at the top if there is none."""
        key, display = _canon(name)
        _check_name(name)
        line = (key, display, _check_value(name, value))
        index = next((i for i, (k, _, _) in enumerate(self._items) if k == key), 0)
        self._items.insert(index, line)
        self._index[key] = [line[2], *self._index.get(key, ())]
        self._changed(key)

    def remove(self, name: str) -> None:
        """Remove every line of `name`."""
        key = _key(name)
        if self._index.pop(key, None) is not None:
            self._items = [it for it in self._items if it[0] != key]
        self._changed(key)

    def remove_first(self, name: str) -> str | None:
        """Remove the first value: for list headers (Via, Route...) the first comma-separated value
        of the first line, keeping the rest of that line; otherwise the first line."""
        key = _key(name)
        if key not in self._index:
            return None
        for i, (k, display, v) in enumerate(self._items):
            if k != key:
                continue
            self._changed(key)
            if key in _LIST_HEADERS and ("," in v):
                parts = split_values(v)
                if len(parts) > 1:
                    rest = ", ".join(parts[1:])
                    self._items[i] = (k, display, rest)
                    self._index[key][0] = rest
                    return parts[0]
            del self._items[i]
            values = self._index[key]
            if len(values) > 1:
                del values[0]
            else:
                del self._index[key]
            return v
        return None  # pragma: no cover  # the index names only keys that have lines

    def copy(self) -> Headers:
        """An independent copy (parsed values are shared: they are immutable)."""
        headers = Headers._from_lines(list(self._items))
        headers._cache = dict(self._cache)
        headers._wire = self._wire
        return headers

    def wire(self) -> bytes:
        """The lines as sent, `Name: value` each followed by CRLF (kept until a line changes)."""
        wire = self._wire
        if wire is None:
            text = "".join([f"{n}: {v}\r\n" for _, n, v in self._items])
            wire = self._wire = text.encode("utf-8", "surrogateescape")
        return wire

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self._index or _key(name) in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((n, v) for _, n, v in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({[(n, v) for _, n, v in self._items]!r})"


def _check_name(name: str) -> None:
    if not _TOKEN_RE.fullmatch(name):
        raise LocalProtocolError(f"bad header name {name!r}")


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42): transport upper case, IPv6 hosts in brackets."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    def param(self, name: str) -> str | None:
        """Value of parameter `name` (case-insensitive), None if absent or valueless."""
        return _find_param(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        """Whether parameter `name` is present, with or without a value."""
        return _find_param(self.params, name)[0]

    def with_params(self, **kv: str | None) -> Via:
        """A copy with these parameters set (None for a flag such as `rport`)."""
        return Via(self.transport, self.host, self.port, _set_params(self.params, kv))

    @property
    def branch(self) -> str | None:
        """The transaction id (RFC 3261 §17.2.3); RFC 3261 ids start with `z9hG4bK`."""
        return self.param("branch")

    @property
    def received(self) -> str | None:
        """The source address a server saw (RFC 3261 §18.2.1)."""
        return self.param("received")

    @property
    def rport(self) -> str | None:
        """The source port a server saw (RFC 3581 §4); None when absent or still empty."""
        return self.param("rport")

    @property
    def has_empty_rport(self) -> bool:
        """RFC 3581 §3: a client asks for the source port with a valueless `rport`."""
        found, value = _find_param(self.params, "rport")
        return found and value is None

    @property
    def sent_by(self) -> str:
        """`host[:port]` as in the Via (RFC 3261 §18.2.2 sends responses there)."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"


def parse_via(value: str) -> Via:
    """Parse one Via value (not a comma list), allowing LWS around "/" as RFC 3261 §25.1 does."""
    m = _PLAIN_VIA_RE.fullmatch(value)
    if m is not None:
        transport, host, port_text, params_text = m.groups()
        port = None if port_text is None else int(port_text)
        if port is None or port <= MAX_PORT:
            return Via(transport.upper(), host, port, split_plain_params(params_text))
    m = _VIA_RE.fullmatch(value.strip(" \t"))
    if m is None:
        raise SipParseError(f"bad Via header {value[:80]!r}")
    transport, host, port_text, params_text = m.groups()
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > MAX_PORT:
            raise SipParseError(f"bad Via header: port {port} out of range")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise SipParseError(f"bad Via header: bad IPv6 reference {host[:60]!r}") from None
    try:
        params = parse_params(params_text)
    except SipParseError as exc:
        raise SipParseError(f"bad Via header: {exc.reason}") from None
    return Via(transport.upper(), host, port, params)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name (unquoted), URI, header params."""

    display: str | None
    uri: SipUri
    params: Params = ()

    def param(self, name: str) -> str | None:
        """Value of header parameter `name` (case-insensitive), as written."""
        return _find_param(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        """Whether header parameter `name` is present."""
        return _find_param(self.params, name)[0]

    @property
    def tag(self) -> str | None:
        """The dialog tag (RFC 3261 §19.3)."""
        return self.param("tag")

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with `;tag=tag` set."""
        return self.with_params(tag=tag)

    def with_params(self, **kv: str | None) -> NameAddr:
        """A copy with these header parameters set (None for a flag)."""
        return NameAddr(self.display, self.uri, _set_params(self.params, kv))

    def __str__(self) -> str:
        prefix = "" if self.display is None else quote(self.display) + " "
        return f"{prefix}<{self.uri}>{format_params(self.params)}"


def parse_name_addr(value: str) -> NameAddr:
    """Parse `"Name" <uri>;p=v`, `Name <uri>` or a bare `uri;p=v` (RFC 3261 §20.10, §25.1).

    In the bare form the first ";" starts the header parameters, so a URI with "?", "," or ";"
    must be in angle brackets (RFC 3261 §20.10).
    """
    text = value.strip(" \t")
    m = _PLAIN_NAME_ADDR_RE.fullmatch(text)
    if m is not None:
        quoted, tokens, uri_text, params_text = m.groups()
        uri, params = parse_uri(uri_text), split_plain_params(params_text)
        return NameAddr(quoted if quoted is not None else tokens, uri, params)
    display: str | None
    if text.startswith('"'):
        qm = _QUOTED_RE.match(text)
        if qm is None:
            raise SipParseError("unterminated quoted string in display name")
        display = unquote(qm.group())
        rest = text[qm.end() :].lstrip(" \t")
        if not rest.startswith("<"):
            raise SipParseError("quoted display name not followed by <URI>")
    else:
        lt = text.find("<")
        if lt < 0:
            return _parse_addr_spec(text)
        display_text = text[:lt].rstrip(" \t")
        if display_text and not _DISPLAY_TOKENS_RE.fullmatch(display_text):
            raise SipParseError(f"bad display name {display_text[:60]!r} (quote it)")
        display = display_text or None
        rest = text[lt:]
    gt = rest.find(">")
    if gt < 0:
        raise SipParseError("missing '>' after URI")
    inner = rest[1:gt]
    if inner != inner.strip(" \t"):
        raise SipParseError("whitespace inside <> around the URI")
    return NameAddr(display, parse_uri(inner), parse_params(rest[gt + 1 :]))


def _parse_addr_spec(text: str) -> NameAddr:
    semi = text.find(";")
    uri_text = text if semi < 0 else text[:semi].rstrip(" \t")
    if "?" in uri_text or "," in uri_text:
        raise SipParseError("URI with '?' or ',' must be enclosed in <> (RFC 3261 §20.10)")
    params = () if semi < 0 else parse_params(text[semi:])
    return NameAddr(None, parse_uri(uri_text), params)


def parse_contacts(values: list[str]) -> list[NameAddr] | Literal["*"]:
    """Parse the comma-split Contact values; `*` (RFC 3261 §10.2.2) must stand alone."""
    if any(v.strip(" \t") == "*" for v in values):
        if len(values) != 1:
            raise SipParseError("Contact '*' combined with other contacts")
        return "*"
    return [parse_name_addr(v) for v in values]


@dataclass(frozen=True, slots=True)
class CSeq:
    """Sequence number and method (RFC 3261 §20.16)."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    """Parse `seq METHOD`; the number must be below 2**31 (RFC 3261 §8.1.1.5)."""
    m = _CSEQ_RE.fullmatch(value.strip(" \t"))
    if m is None:
        raise SipParseError(f"invalid CSeq {value[:40]!r}")
    seq = int(m.group(1))
    if seq >= MAX_CSEQ:
        raise SipParseError(f"invalid CSeq: sequence number {seq} not below 2**31")
    return CSeq(seq, m.group(2))


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Parse a challenge or credentials header (RFC 3261 §25.1, RFC 7616 §3.3) into its scheme
    and parameters: names lower-cased, quoted values unquoted (escapes resolved)."""
    sm = _AUTH_SCHEME_RE.match(value)
    if sm is None:
        raise SipParseError(f"bad authentication header {value[:60]!r}")
    params: dict[str, str] = {}
    pos = sm.end()
    end = len(value.rstrip(" \t"))
    while pos < end:
        m = _AUTH_PARAM_RE.match(value, pos)
        if m is None:
            raise SipParseError(f"bad authentication parameter in {value[:60]!r}")
        params[m.group(1).lower()] = unquote(m.group(2))
        pos = m.end()
    return sm.group(1), params


def format_auth_header(scheme: str, params: Iterable[tuple[str, str, bool]]) -> str:
    """Serialize `scheme name=value, name="value"`; each param is (name, value, quoted)."""
    body = ", ".join(f"{n}={quote(v) if q else v}" for n, v, q in params)
    return f"{scheme} {body}" if body else scheme
