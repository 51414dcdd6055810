"""Header-value lexing shared by the SIP header parsers: parameters, quoted strings, comma lists.

Grammar from RFC 3261 §25.1. Parameter values are kept as written (quoted strings keep their
quotes) so that serializing gives back an equal value.
"""

from __future__ import annotations

import re

from callplane.core.sip.errors import SipParseError
from callplane.core.sip.uri import Params, split_plain_params

TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
QUOTED = r'"(?:[^"\\]|\\[\s\S])*"'
_QUOTED_PAIR_RE = re.compile(r"\\([\s\S])")
# RFC 3261 §25.1 generic-param: token [EQUAL (token / host / quoted-string)]
_PARAM_RE = re.compile(rf"[ \t]*;[ \t]*({TOKEN})(?:[ \t]*=[ \t]*({QUOTED}|[^\s;,\"=<>]+))?[ \t]*")
# The same without LWS or quoted strings: such text splits on ";" and "=" alone.
_PLAIN_PARAMS_RE = re.compile(rf"(?:;{TOKEN}(?:=[^\s;,\"=<>]+)?)+")
_COMMA_SCAN_RE = re.compile(r'"(?:[^"\\]|\\[\s\S])*"|<[^>]*>|,|[^,"<]+|["<]')


def split_values(value: str) -> list[str]:
    """Split a header value on top-level commas, not those in quotes, <...> or after "\\".

    Empty elements are dropped; an unbalanced quote or "<" raises SipParseError.
    """
    if "," not in value and '"' not in value:
        lt = value.rfind("<")
        if lt < 0 or value.find(">", lt) > 0:  # every "<" is closed: one value, as is
            item = value.strip(" \t")
            return [item] if item else []
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
    if _PLAIN_PARAMS_RE.fullmatch(text):
        return split_plain_params(text)
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


def find_param(params: Params, name: str) -> tuple[bool, str | None]:
    """(present, value) of parameter `name`, compared case-insensitively."""
    wanted = name.lower()
    for n, v in params:
        if n == wanted or n.lower() == wanted:
            return True, v
    return False, None


def set_params(params: Params, changes: dict[str, str | None]) -> Params:
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
