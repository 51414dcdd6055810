"""Answers to messages the parser refused: a 400 (or 505, 513...) naming the fault, or silence.

RFC 3261 §8.2.6 needs Via, From, To, Call-ID and CSeq to form a response; when a malformed
request still carries them all, their raw lines are copied into the answer. Responses, and
requests missing any of them, are dropped: there is nobody to answer or no way to reach them.
"""

from __future__ import annotations

from callplane.core.sip.errors import SipParseError

MAX_REASON_CHARS = 120  # a reason phrase is for a log line, not a copy of the attacker's bytes
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id"}
NEEDED = ("via", "from", "to", "call-id", "cseq")


def reject_malformed(data: bytes, error: SipParseError) -> bytes | None:
    """The bytes of the answer to a malformed request, or None when it must be dropped."""
    head = data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n")
    lines = head.split(b"\n")
    if not lines or lines[0].startswith(b"SIP/") or b"SIP/2.0" not in lines[0]:
        return None
    found: dict[str, list[bytes]] = {}
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") or b":" not in line:
            continue
        name = line.split(b":", 1)[0].strip().decode("latin-1").lower()
        name = COMPACT.get(name, name)
        if name in NEEDED:
            value = line.split(b":", 1)[1].strip()
            found.setdefault(name, []).append(value)
    if any(name not in found for name in NEEDED):
        return None
    if len(found["call-id"]) != 1 or len(found["cseq"]) != 1:
        return None
    status = error.status if 300 <= error.status < 700 else 400
    reason = _reason(error.reason)
    out = [f"SIP/2.0 {status} {reason}".encode()]
    labels = {"via": b"Via", "from": b"From", "to": b"To", "call-id": b"Call-ID", "cseq": b"CSeq"}
    for name in NEEDED:
        values = found[name] if name == "via" else found[name][:1]
        out.extend(labels[name] + b": " + value for value in values)
    out.append(b"Content-Length: 0")
    return b"\r\n".join(out) + b"\r\n\r\n"


def _reason(text: str) -> str:
    """A reason phrase safe to put on a status line: printable ASCII, bounded."""
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return cleaned[:MAX_REASON_CHARS] or "Bad Request"
