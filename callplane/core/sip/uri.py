"""SIP, SIPS and tel URIs (RFC 3261 §19.1 and §25.1, RFC 3966 §3): parse, serialize, read params.

A `SipUri` keeps every part as written (user, params and headers stay %-escaped) so that
`parse_uri(str(uri)) == uri`; the `*_unescaped` accessors and `param()` decode escapes, since
RFC 3261 §19.1.4 compares URIs with escapes decoded.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from callplane.core.sip.errors import SipParseError

SUPPORTED_SCHEMES = frozenset({"sip", "sips", "tel"})
MAX_PORT = 65_535  # a port is 16 bits (RFC 768, RFC 793)
UNSUPPORTED_SCHEME_STATUS = 416  # RFC 3261 §21.4.15: Unsupported URI Scheme
# Parsed URIs are immutable and the same few recur in every call of a phone or trunk (Request-URI,
# From, To, Contact), so recent ones are kept: at most URI_CACHE_SIZE of at most
# URI_CACHE_MAX_CHARS each, about 1 MB, which hostile traffic can churn but not grow.
URI_CACHE_SIZE = 2_048
URI_CACHE_MAX_CHARS = 256

# RFC 3261 §25.1 character classes; "%" is allowed here and escapes are checked on their own.
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()%"
_USERINFO_RE = re.compile(rf"([{_UNRESERVED}&=+$,;?/]+)(?::([{_UNRESERVED}&=+$,]*))?")
_HOSTPORT_RE = re.compile(
    rf"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+)"  # IPv6reference / hostname / IPv4address
    rf"(?::([0-9]{{1,5}}))?"
    rf"((?:;[{_UNRESERVED}\[\]/:&+$]+(?:=[{_UNRESERVED}\[\]/:&+$]+)?)*)"
    rf"(?:\?([{_UNRESERVED}\[\]/?:+$]+=[{_UNRESERVED}\[\]/?:+$]*"
    rf"(?:&[{_UNRESERVED}\[\]/?:+$]+=[{_UNRESERVED}\[\]/?:+$]*)*))?"
)
# A lower-case sip:/sips: URI in one pass; anything else takes the step-by-step path of
# `parse_uri`, which also names the fault. Userinfo holds no "@" and nothing after it may.
_PLAIN_SIP_RE = re.compile(rf"(sips?):(?:{_USERINFO_RE.pattern}@)?{_HOSTPORT_RE.pattern}")
_TEL_RE = re.compile(r"([0-9A-Fa-f*#+\-.()pPwW]+)((?:;[A-Za-z0-9\-_.!~*'()%\[\]/:&+$=]+)*)")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")

Params = tuple[tuple[str, str | None], ...]


def _unescape(text: str) -> str:
    return unquote(text, errors="surrogateescape") if "%" in text else text


def split_plain_params(text: str) -> Params:
    """`;a=b;c` -> (("a", "b"), ("c", None)); the text was already checked by a regex, so no
    name or value holds ";", "=", blanks or quotes."""
    if not text:
        return ()
    out: list[tuple[str, str | None]] = []
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        out.append((name, value if eq else None))
    return tuple(out)


def format_params(params: Params) -> str:
    """Serialize parameters as `;name=value` / `;name`, in order."""
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


@dataclass(frozen=True, slots=True)
class SipUri:
    """A sip:, sips: or tel: URI. For tel: the number is in `user` and `host` is empty."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str | None:
        """The %-decoded value of parameter `name` (case-insensitive); None if absent or a flag."""
        wanted = name.lower()
        for n, v in self.params:
            if _unescape(n).lower() == wanted:
                return None if v is None else _unescape(v)
        return None

    def has_param(self, name: str) -> bool:
        """Whether parameter `name` is present, with or without a value (e.g. `;lr`)."""
        wanted = name.lower()
        return any(_unescape(n).lower() == wanted for n, _ in self.params)

    def with_(self, **changes: Any) -> SipUri:
        """A copy with the given fields replaced."""
        return dataclasses.replace(self, **changes)

    @property
    def user_unescaped(self) -> str | None:
        """The user part with %-escapes decoded (RFC 3261 §19.1.2); bytes outside UTF-8 survive."""
        return None if self.user is None else _unescape(self.user)

    @property
    def host_port(self) -> str:
        """`host[:port]` as written in a URI."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{format_params(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{n}={v}" for n, v in self.headers))
        return "".join(out)


def parse_uri(text: str) -> SipUri:
    """Parse a sip:, sips: or tel: URI (RFC 3261 §25.1, RFC 3966 §3).

    Another well-formed scheme raises SipParseError with status 416 (RFC 3261 §8.2.2.1); anything
    else that is not a URI raises it with status 400.
    """
    if len(text) <= URI_CACHE_MAX_CHARS:
        return _parse_uri_cached(text)
    return _parse_uri(text)


def _parse_uri(text: str) -> SipUri:
    m = _PLAIN_SIP_RE.fullmatch(text)
    if m is not None and ("%" not in text or not _BAD_ESCAPE_RE.search(text)):
        scheme, user, password, host, port_text, params_text, headers_text = m.groups()
        if host[0] != "[" and port_text is None and not headers_text:
            return SipUri(scheme, user, password, host, None, split_plain_params(params_text))
        return _sip_uri(text, scheme, user, password, host, port_text, params_text, headers_text)
    return _parse_uri_steps(text)


def _parse_uri_steps(text: str) -> SipUri:
    """The general path: scheme, userinfo, then hostport, each refused with its own reason."""
    scheme_text, colon, rest = text.partition(":")
    scheme = scheme_text.lower()
    if not colon or not _SCHEME_RE.fullmatch(scheme_text):
        raise SipParseError(f"bad URI {text[:80]!r}")
    if scheme not in SUPPORTED_SCHEMES:
        raise SipParseError(f"unsupported URI scheme {scheme!r}", UNSUPPORTED_SCHEME_STATUS)
    if _BAD_ESCAPE_RE.search(rest):
        raise SipParseError(f"bad %-escape in URI {text[:80]!r}")
    if scheme == "tel":
        m = _TEL_RE.fullmatch(rest)
        if m is None:
            raise SipParseError(f"bad tel URI {text[:80]!r}")
        return SipUri("tel", m.group(1), None, "", None, split_plain_params(m.group(2)))
    user: str | None = None
    password: str | None = None
    # The user part may hold ";" and "?" (RFC 3261 §25.1 user-unreserved) but never "@", so the
    # first "@" ends the userinfo; splitting first keeps the regexes free of backtracking.
    at = rest.find("@")
    if at >= 0:
        um = _USERINFO_RE.fullmatch(rest, 0, at)
        if um is None:
            raise SipParseError(f"bad user part in URI {text[:80]!r}")
        user, password = um.group(1), um.group(2)
        rest = rest[at + 1 :]
    hm = _HOSTPORT_RE.fullmatch(rest)
    if hm is None:
        raise SipParseError(f"bad URI {text[:80]!r}")
    return _sip_uri(text, scheme, user, password, *hm.groups())


_parse_uri_cached = functools.lru_cache(maxsize=URI_CACHE_SIZE)(_parse_uri)


def _sip_uri(
    text: str,
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port_text: str | None,
    params_text: str,
    headers_text: str | None,
) -> SipUri:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise SipParseError(f"bad IPv6 reference in URI {text[:80]!r}") from None
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > MAX_PORT:
            raise SipParseError(f"bad port in URI {text[:80]!r}")
    headers: tuple[tuple[str, str], ...] = ()
    if headers_text:
        headers = tuple((n, v) for n, _, v in (h.partition("=") for h in headers_text.split("&")))
    return SipUri(scheme, user, password, host, port, split_plain_params(params_text), headers)
