"""Structured SIP header values: Via, name-addr (From/To/Contact/Route), CSeq, parameters, digest.

Grammar from RFC 3261 §25.1; each parser takes one header value (already unfolded) and raises
SipParseError naming the fault. Header parameter values are kept as written (quoted strings keep
their quotes) so that serializing gives back an equal value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

from callplane.core.sip.errors import LocalProtocolError, SipParseError
from callplane.core.sip.uri import MAX_PORT, Params, SipUri, format_params, parse_uri

T = TypeVar("T")
MAX_CSEQ = 2**31  # RFC 3261 §8.1.1.5: the CSeq sequence number MUST be less than 2**31

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_QUOTED = r'"(?:[^"\\]|\\[\s\S])*"'
_TOKEN_RE = re.compile(_TOKEN)
_QUOTED_RE = re.compile(_QUOTED)
_QUOTED_PAIR_RE = re.compile(r"\\([\s\S])")
_DISPLAY_TOKENS_RE = re.compile(rf"{_TOKEN}(?:[ \t]+{_TOKEN})*")
# RFC 3261 §25.1 generic-param: token [EQUAL (token / host / quoted-string)]
_PARAM_RE = re.compile(rf"[ \t]*;[ \t]*({_TOKEN})(?:[ \t]*=[ \t]*({_QUOTED}|[^\s;,\"=<>]+))?[ \t]*")
_VIA_RE = re.compile(
    rf"SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*({_TOKEN})[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
    r"((?:[ \t]*;[\s\S]*)?)",
    re.IGNORECASE,
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

_COMMA_SCAN_RE = re.compile(r'"(?:[^"\\]|\\[\s\S])*"|<[^>]*>|,|[^,"<]+|["<]')


def _canon(name: str) -> tuple[str, str]:
    """(lookup key, name to write): compact and any-case forms of known names become canonical."""
    known = _CANONICAL.get(name.lower())
    return known if known is not None else (name.lower(), name)


def split_values(value: str) -> list[str]:
    """Split a header value on top-level commas, not those in quotes, <...> or after "\\".

    Empty elements are dropped; an unbalanced quote or "<" raises SipParseError.
    """
    if '"' not in value and "<" not in value:
        return [p for p in (part.strip(" \t") for part in value.split(",")) if p]
    out: list[str] = []
    current: list[str] = []
    for m in _COMMA_SCAN_RE.finditer(value):
        piece = m.group()
        if piece == ",":
            item = "".join(current).strip(" \t")
            if item:
                out.append(item)
            current = []
        elif piece in ('"', "<"):
            raise SipParseError(f"unbalanced {piece!r} in header value {value[:60]!r}")
        else:
            current.append(piece)
    item = "".join(current).strip(" \t")
    if item:
        out.append(item)
    return out


def _check_value(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(f"header {name} value contains CR or LF")
    return value.strip(" \t")


class Headers:
    """Ordered, case-insensitive multi-map of header lines. Compact forms (i, m, e, l, f, t, v, s,
    k, c, o, u, r, x, a, j, b, d, y, n) are expanded to canonical full names (Call-ID, Contact,
    Content-Encoding, Content-Length, From, To, Via, Subject, Supported, Content-Type, Event,
    Allow-Events, Refer-To, Session-Expires, Accept-Contact, Reject-Contact, Referred-By,
    Request-Disposition, Identity, Identity-Info), as RFC 3261 §7.3.3 makes them equivalent."""

    __slots__ = ("_cache", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []  # (lower-case key, name, value)
        self._cache: dict[str, object] = {}  # parsed values by key, dropped when lines change
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_lines(cls, items: list[tuple[str, str, str]]) -> Headers:
        headers = cls.__new__(cls)
        headers._items = items
        headers._cache = {}
        return headers

    @classmethod
    def parse_lines(cls, lines: list[str]) -> Headers:
        """Headers from the lines after a start line, unfolding continuation lines (RFC 3261
        §7.3.1); a second line of a single-value header (Call-ID, CSeq...) is an error."""
        items: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        for line in lines:
            if line[:1] in (" ", "\t"):
                if not items:
                    raise SipParseError("continuation line before the first header")
                more = line.strip(" \t")
                if more:
                    k, n, v = items[-1]
                    items[-1] = (k, n, f"{v} {more}" if v else more)
                continue
            name, colon, value = line.partition(":")
            if not colon:
                raise SipParseError(f"bad header line {line[:60]!r}")
            name = name.rstrip(" \t")
            known = _CANONICAL.get(name.lower())
            if known is None:
                if not _TOKEN_RE.fullmatch(name):
                    raise SipParseError(f"bad header name {name[:60]!r}")
                known = (name.lower(), name)
            key = known[0]
            if key in _TRACKED:
                if key in seen and key in _SINGLE_VALUE:
                    raise SipParseError(f"multiple {known[1]} headers")
                seen.add(key)
            items.append((key, known[1], value.strip(" \t")))
        return cls._from_lines(items)

    def cached(self, key: str, parser: Callable[[Headers], T]) -> T:
        """`parser(self)`, computed once and kept until a line of `key` changes."""
        try:
            return cast(T, self._cache[key])
        except KeyError:
            value = parser(self)
            self._cache[key] = value
            return value

    def _changed(self, key: str) -> None:
        self._cache.pop(key, None)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first line's value, or `default`."""
        key = _canon(name)[0]
        for k, _, v in self._items:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every line's value, in order, not split on commas."""
        key = _canon(name)[0]
        return [v for k, _, v in self._items if k == key]

    def values(self, name: str) -> list[str]:
        """Every value of a list header (Via, Contact, Route, Allow...), lines split on
        top-level commas. Not for headers whose values hold bare commas (Date, WWW-Authenticate)."""
        key = _canon(name)[0]
        out: list[str] = []
        for k, _, v in self._items:
            if k == key:
                out += split_values(v)
        return out

    def set(self, name: str, value: str) -> None:
        """Replace all lines of `name` by one line where the first was (else at the end)."""
        key, display = _canon(name)
        _check_name(name)
        line = (key, display, _check_value(name, value))
        items = self._items
        for i, (k, _, _) in enumerate(items):
            if k == key:
                self._items = items[:i] + [line] + [it for it in items[i + 1 :] if it[0] != key]
                break
        else:
            items.append(line)
        self._changed(key)

    def add(self, name: str, value: str) -> None:
        """Append a line."""
        key, display = _canon(name)
        _check_name(name)
        self._items.append((key, display, _check_value(name, value)))
        self._changed(key)

    def prepend(self, name: str, value: str) -> None:
        """Insert a line before the first line of `name`, or at the top if there is none."""
        key, display = _canon(name)
        _check_name(name)
        line = (key, display, _check_value(name, value))
        index = next((i for i, (k, _, _) in enumerate(self._items) if k == key), 0)
        self._items.insert(index, line)
        self._changed(key)

    def remove(self, name: str) -> None:
        """Remove every line of `name`."""
        key = _canon(name)[0]
        self._items = [it for it in self._items if it[0] != key]
        self._changed(key)

    def remove_first(self, name: str) -> str | None:
        """Remove the first value: for list headers (Via, Route...) the first comma-separated value
        of the first line, keeping the rest of that line; otherwise the first line."""
        key = _canon(name)[0]
        for i, (k, display, v) in enumerate(self._items):
            if k != key:
                continue
            self._changed(key)
            if key in _LIST_HEADERS and ("," in v):
                parts = split_values(v)
                if len(parts) > 1:
                    self._items[i] = (k, display, ", ".join(parts[1:]))
                    return parts[0]
            del self._items[i]
            return v
        return None

    def copy(self) -> Headers:
        """An independent copy (parsed values are shared: they are immutable)."""
        headers = Headers._from_lines(list(self._items))
        headers._cache = dict(self._cache)
        return headers

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _canon(name)[0]
        return any(k == key for k, _, _ in self._items)

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


def quote(text: str) -> str:
    """`text` as a quoted-string, with `"` and `\\` escaped (RFC 3261 §25.1 quoted-pair)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(text: str) -> str:
    """The content of a quoted-string with quoted-pairs resolved; other text is returned as is."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return _QUOTED_PAIR_RE.sub(r"\1", text[1:-1])
    return text


def parse_params(text: str) -> Params:
    """Parse header parameters `;a=b ; c ;d="x y"` (the leading ";" is optional).

    Values are kept as written (quotes included); RFC 3261 §7.3.1 allows LWS around ";" and "=".
    """
    stripped = text.strip(" \t")
    if not stripped:
        return ()
    if stripped[0] != ";":
        stripped = ";" + stripped
    out: list[tuple[str, str | None]] = []
    pos = 0
    end = len(stripped)
    while pos < end:
        m = _PARAM_RE.match(stripped, pos)
        if m is None:
            raise SipParseError(f"bad header parameters {text[:80]!r}")
        out.append((m.group(1), m.group(2)))
        pos = m.end()
    return tuple(out)


def _find_param(params: Params, name: str) -> tuple[bool, str | None]:
    wanted = name.lower()
    for n, v in params:
        if n.lower() == wanted:
            return True, v
    return False, None


def _set_params(params: Params, changes: dict[str, str | None]) -> Params:
    """Replace parameters by name (case-insensitive, keeping position) or append new ones."""
    out = list(params)
    for name, value in changes.items():
        wanted = name.lower()
        for i, (n, _) in enumerate(out):
            if n.lower() == wanted:
                out[i] = (n, value)
                break
        else:
            out.append((name, value))
    return tuple(out)


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
