"""RFC 4475 torture messages sent to the running server over UDP.

§3.1.2's invalid messages are each answered with the status the RFC calls for (400 with a reason
phrase naming the fault, 505 for an unknown version) or dropped when no response can be formed
(a response is never answered, RFC 3261 §17.1.3). §3.1.1's valid messages get a proper answer,
never a 400. The server keeps serving throughout.

Each message's top Via sent-by is pointed at the test's socket (with `rport`, transport UDP) so
that answers come back to it; nothing else in the message is changed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.server import RunningServer, sip_options
from sipclient import SipClient

CI = os.environ.get("CI", "").lower() == "true"
RFC4475_DIR = (
    Path(
        os.environ.get(
            "CALLPLANE_SIP_CONFORMANCE",
            str(Path(__file__).resolve().parents[3] / "shared" / "sip-conformance"),
        )
    )
    / "rfc4475"
)
ANSWER_WAIT_S = 1.5  # loopback: an answer arrives in milliseconds; silence after this is a drop
DROPPED = "dropped"

_VIA_NAME_RE = re.compile(rb"^(via|v)[ \t]*:", re.IGNORECASE | re.MULTILINE)
_CALL_ID_RE = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_SENT_BY_RE = re.compile(
    rb"(SIP\s*/\s*[0-9.]+\s*/\s*)(UDP|TCP|TLS|SCTP)(\s+)([^\s;,]+)", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Expect:
    """What the server must do with one message: a status (with a reason pattern) or a drop."""

    outcomes: tuple[int | str, ...]  # statuses, DROPPED, or "handled" (any non-400 answer)
    reason: str | None = None  # a regex the reason phrase must match when the answer is 400
    note: str = ""


HANDLED = "handled"

# RFC 4475 §3.1.2: invalid messages.
INVALID: dict[str, Expect] = {
    "badinv01": Expect(
        (400, DROPPED), r"Via|Contact|param", "§3.1.2.1 empty header parameters in Via"
    ),
    "clerr": Expect((400,), r"Content-Length", "§3.1.2.2 Content-Length larger than the body"),
    "ncl": Expect((400,), r"Content-Length", "§3.1.2.3 negative Content-Length"),
    "scalar02": Expect((400,), r"CSeq|Max-Forwards|Expires", "§3.1.2.4 overlarge scalars"),
    "scalarlg": Expect((DROPPED,), None, "§3.1.2.5 a response: never answered"),
    "quotbal": Expect((400,), r"\bTo\b|quot", "§3.1.2.6 unterminated quoted display name"),
    "ltgtruri": Expect((400,), r"(?i)request-uri", "§3.1.2.7 <> around the Request-URI"),
    "lwsruri": Expect((400,), r"(?i)request.line|request-uri", "§3.1.2.8 LWS in Request-URI"),
    "lwsstart": Expect((400,), r"(?i)request.line", "§3.1.2.9 several SP in the request line"),
    "trws": Expect((400,), r"(?i)request.line|version", "§3.1.2.10 SP after the version"),
    "escruri": Expect(
        (400, HANDLED), r"(?i)request-uri", "§3.1.2.11 escaped headers in the Request-URI"
    ),
    "baddate": Expect(
        (400, HANDLED), r"\bDate\b", "§3.1.2.12 non-GMT Date: reject, or ignore the Date"
    ),
    "regbadct": Expect((400,), r"\bContact\b", "§3.1.2.13 URI with '?' not enclosed in <>"),
    "badaspec": Expect((400,), r"\bTo\b", "§3.1.2.14 spaces inside the addr-spec"),
    "baddn": Expect((400,), r"\bFrom\b", "§3.1.2.15 unquoted non-token display name"),
    "badvers": Expect((505,), None, "§3.1.2.16 SIP/7.0: Version Not Supported"),
    "mismatch01": Expect((400,), r"CSeq", "§3.1.2.17 CSeq method differs from the method"),
    "mismatch02": Expect((400,), r"CSeq", "§3.1.2.18 unknown method, CSeq mismatch: 400 not 501"),
    "bigcode": Expect((DROPPED,), None, "§3.1.2.19 a response: never answered"),
}

# RFC 4475 §3.1.1: valid messages. Requests get a final answer that is not 400 (the targets are
# unknown, so 401/403/404/501 are all proper); responses match no transaction and are dropped.
VALID: dict[str, Expect] = {
    "wsinv": Expect((HANDLED,), None, "§3.1.1.1 whitespace and folding everywhere"),
    "intmeth": Expect((HANDLED,), None, "§3.1.1.2 wide range of valid characters (501 is fine)"),
    "esc01": Expect((HANDLED,), None, "§3.1.1.3 escaped characters in URIs"),
    "escnull": Expect((HANDLED,), None, "§3.1.1.4 escaped nulls in URIs"),
    "esc02": Expect((HANDLED,), None, "§3.1.1.5 escaped method name: an unknown method"),
    "lwsdisp": Expect((HANDLED,), None, "§3.1.1.6 no LWS between display name and <"),
    "longreq": Expect((HANDLED,), None, "§3.1.1.7 long values everywhere"),
    "dblreq": Expect((HANDLED,), None, "§3.1.1.8 extra octets after the message are ignored"),
    "semiuri": Expect((HANDLED,), None, "§3.1.1.9 semicolon-separated params in the user part"),
    "transports": Expect((HANDLED,), None, "§3.1.1.10 Vias of several transports"),
    "mpart01": Expect((HANDLED,), None, "§3.1.1.11 multipart MIME body"),
    "unreason": Expect((DROPPED,), None, "§3.1.1.12 a response with an unusual reason phrase"),
    "noreason": Expect((DROPPED,), None, "§3.1.1.13 a response with an empty reason phrase"),
}


def point_via_at(data: bytes, host: str, port: int) -> bytes:
    """Rewrite the first Via's transport and sent-by to UDP host:port;rport, keeping the rest.

    Only the first header named Via (or compact `v`) is touched, folded lines included, so the
    fault a torture message carries elsewhere in its Via (or anywhere else) is kept.
    """
    head_end = data.find(b"\r\n\r\n")
    head_end = len(data) if head_end < 0 else head_end
    found = _VIA_NAME_RE.search(data, 0, head_end)
    if found is None:
        return data
    value_start = found.end()
    match = _SENT_BY_RE.search(data, value_start, head_end)
    if match is None:
        return data
    sent_by = f"{host}:{port};rport".encode()
    return data[: match.start(2)] + b"UDP" + match.group(3) + sent_by + data[match.end(4) :]


def _require_data() -> None:
    if RFC4475_DIR.is_dir():
        return
    message = f"RFC 4475 messages not found at {RFC4475_DIR} (the shared sip-conformance data)"
    if CI:
        pytest.fail(message + " -- required under CI=true", pytrace=False)
    pytest.skip(message)


def _send_and_judge(client: SipClient, name: str, expect: Expect) -> str | None:
    """Send one message; return a description of what went wrong, or None if as expected."""
    data = point_via_at((RFC4475_DIR / f"{name}.dat").read_bytes(), client.host, client.port)
    call_id = _CALL_ID_RE.search(data)
    client.send(data)
    reply = client.final(ANSWER_WAIT_S, call_id.group(1).decode().strip() if call_id else None)
    if reply is None:
        if DROPPED in expect.outcomes:
            return None
        return f"{name} ({expect.note}): no answer, expected {expect.outcomes}"
    if reply.status in expect.outcomes:
        if reply.status == 400 and expect.reason and not re.search(expect.reason, reply.reason):
            return (
                f"{name} ({expect.note}): 400 reason {reply.reason!r} does not name the fault "
                f"(/{expect.reason}/)"
            )
        return None
    if HANDLED in expect.outcomes and reply.status != 400:
        return None
    return (
        f"{name} ({expect.note}): answered {reply.status} {reply.reason!r}, "
        f"expected {expect.outcomes}"
    )


@pytest.fixture
def server(pbx: RunningServer) -> RunningServer:
    _require_data()
    return pbx


def _check_all(server: RunningServer, table: dict[str, Expect]) -> list[str]:
    """Send each message from a socket of its own: many share a branch (`z9hG4bKkdjuw`), so
    from one sent-by they would match one server transaction (RFC 3261 §17.2.3)."""
    problems = []
    for name, expect in table.items():
        with SipClient(server.sip_port) as client:
            problem = _send_and_judge(client, name, expect)
        if problem:
            problems.append(problem)
    return problems


def test_every_invalid_message_is_refused_with_its_fault_or_dropped(
    server: RunningServer,
) -> None:
    problems = _check_all(server, INVALID)
    assert not problems, "\n".join(problems)
    assert server.running
    assert sip_options(server.sip_port) == 200


def test_every_valid_message_gets_a_proper_answer(server: RunningServer) -> None:
    problems = _check_all(server, VALID)
    assert not problems, "\n".join(problems)
    assert server.running
    assert sip_options(server.sip_port) == 200


def test_the_tables_cover_every_message_of_the_two_sections() -> None:
    _require_data()
    present = {path.stem for path in RFC4475_DIR.glob("*.dat")}
    assert set(INVALID) <= present
    assert set(VALID) <= present


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP host.example.com;branch=z9hG4bK1\r\n\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:5;rport;branch=z9hG4bK1\r\n\r\n",
        ),
        (
            b"X sip:a@b SIP/2.0\r\nVia  : SIP  /   2.0\r\n  /UDP\r\n    192.0.2.2;branch=x\r\n\r\n",
            b"X sip:a@b SIP/2.0\r\nVia  : SIP  /   2.0\r\n  /UDP\r\n    "
            b"127.0.0.1:5;rport;branch=x\r\n\r\n",
        ),
    ],
)
def test_via_rewrite_points_only_the_sent_by_at_the_test(message: bytes, expected: bytes) -> None:
    assert point_via_at(message, "127.0.0.1", 5) == expected
