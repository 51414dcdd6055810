"""SIP message parse/serialize, make_response and stream framing (RFC 3261 §7, §8.2.6, §18.3)."""

from __future__ import annotations

import pytest

from callplane.core.sip.errors import SipParseError
from callplane.core.sip.headers import CSeq, Headers, parse_via
from callplane.core.sip.message import (
    MAX_MESSAGE_BYTES,
    REASONS,
    Request,
    Response,
    StreamMessageError,
    StreamParser,
    make_error_response,
    make_response,
    parse,
)

BODY = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n"


def invite(*, extra: str = "", body: bytes = BODY, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Alice" <sip:alice@example.com>;tag=9fxced76sl\r\n'
        "To: Bob <sip:bob@example.com>\r\n"
        "Call-ID: 3848276298220188511@192.0.2.1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:alice@192.0.2.1>\r\n"
        f"{extra}"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode() + body


def test_request_parses_into_typed_fields() -> None:
    req = parse(invite())
    assert isinstance(req, Request)
    assert (req.method, req.uri, req.version, req.body) == (
        "INVITE",
        "sip:bob@example.com",
        "SIP/2.0",
        BODY,
    )
    assert req.call_id == "3848276298220188511@192.0.2.1"
    assert req.cseq == CSeq(1, "INVITE")
    assert req.via == [parse_via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport")]
    assert req.from_.display == "Alice" and req.from_.tag == "9fxced76sl"
    assert req.to.display == "Bob" and req.to.tag is None
    contacts = req.contacts
    assert contacts != "*" and str(contacts[0].uri) == "sip:alice@192.0.2.1"
    assert req.request_uri.user == "bob" and req.max_forwards == 70


def test_serialize_round_trips_and_sets_content_length() -> None:
    req = parse(invite())
    assert parse(bytes(req)) == req
    req.body = b"short"
    wire = bytes(req)
    assert b"Content-Length: 5\r\n" in wire and wire.endswith(b"\r\n\r\nshort")
    assert parse(wire) == req


def test_compact_forms_folding_and_case_are_normalised() -> None:
    data = (
        b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"f: <sip:c@d>;tag=1\r\n"
        b"t: <sip:a@b>\r\ni: abc\r\ncseq: 2\r\n  OPTIONS\r\nX-Thing: one\r\n\ttwo\r\nl: 0\r\n\r\n"
    )
    req = parse(data)
    assert [name for name, _ in req.headers] == [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "X-Thing",
        "Content-Length",
    ]
    assert req.headers.get("x-thing") == "one two"
    assert req.cseq == CSeq(2, "OPTIONS")
    assert parse(bytes(req)) == req


def test_response_parses_including_empty_and_utf8_reason() -> None:
    data = (
        "SIP/2.0 180 Ça sonne\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        "To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    resp = parse(data)
    assert isinstance(resp, Response) and (resp.status, resp.reason) == (180, "Ça sonne")
    empty = parse(data.replace("180 Ça sonne".encode(), b"100 "))
    assert isinstance(empty, Response) and empty.reason == ""
    assert parse(bytes(resp)) == resp


def test_udp_body_is_cut_at_content_length_and_missing_length_takes_the_rest() -> None:
    assert parse(invite(body=BODY + b"garbage", length=len(BODY))).body == BODY
    no_length = invite().replace(f"Content-Length: {len(BODY)}\r\n".encode(), b"")
    assert parse(no_length).body == BODY


def test_non_utf8_header_bytes_survive_a_round_trip() -> None:
    req = parse(invite(extra="Subject: caf\xe9\r\n").replace("caf\xe9".encode(), b"caf\xe9"))
    assert bytes(req).count(b"Subject: caf\xe9\r\n") == 1
    assert parse(bytes(req)) == req


@pytest.mark.parametrize(
    ("data", "keyword", "status"),
    [
        (
            invite(length=len(BODY) + 20),
            f"Content-Length {len(BODY) + 20} larger than body {len(BODY)}",
            400,
        ),
        (
            invite().replace(b"Call-ID: 3848276298220188511@192.0.2.1\r\n", b""),
            "missing Call-ID",
            400,
        ),
        (invite().replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"), "invalid CSeq", 400),
        (invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), "does not match", 400),
        (invite().replace(b"SIP/2.0/UDP 192.0.2.1:5060", b"SIP/2.0/UDP"), "bad Via header", 400),
        (
            invite().replace(b"sip:bob@example.com SIP/2.0", b"sip:bob@example.com SIP/7.0"),
            "SIP version 7.0 not supported",
            505,
        ),
        (
            invite().replace(b"INVITE sip:bob@example.com SIP/2.0", b"INVITE sip:bob@example.com"),
            "bad request line",
            400,
        ),
        (
            invite().replace(b"sip:bob@example.com SIP", b"mailto:bob@example.com SIP"),
            "unsupported URI scheme",
            416,
        ),
        (invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), "Max-Forwards", 400),
        (invite(extra="Call-ID: again\r\n"), "multiple Call-ID headers", 400),
        (invite().replace(b"\r\n\r\n", b"\r\n"), "no empty line", 400),
        (invite().replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n"), "bare CR or LF", 400),
        (invite(extra="Bad Header: x\r\n"), "bad header name", 400),
        (b"SIP/2.0 4294967301 Big\r\n\r\n", "status code", 400),
        (b"x" * (MAX_MESSAGE_BYTES + 1), "exceeds", 513),
    ],
)
def test_malformed_messages_raise_a_named_fault(data: bytes, keyword: str, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse(data)
    assert keyword in info.value.reason
    assert info.value.status == status


def test_missing_max_forwards_is_tolerated_for_rfc2543_peers() -> None:
    req = parse(invite().replace(b"Max-Forwards: 70\r\n", b""))
    assert isinstance(req, Request) and req.max_forwards is None


def test_make_response_copies_dialog_headers_and_adds_to_tag() -> None:
    req = parse(
        invite(extra="Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp\r\nTimestamp: 54\r\n")
    )
    assert isinstance(req, Request)
    resp = make_response(req, 180, to_tag="as83", headers=[("Contact", "<sip:bob@192.0.2.2>")])
    assert (resp.status, resp.reason) == (180, REASONS[180])
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.to.tag == "as83" and resp.from_ == req.from_
    assert resp.call_id == req.call_id and resp.cseq == req.cseq
    assert resp.headers.get("Content-Length") == "0" and "Timestamp" not in resp.headers
    assert parse(bytes(resp)) == resp
    trying = make_response(req, 100)
    assert trying.headers.get("Timestamp") == "54" and trying.to.tag is None


def test_make_response_keeps_an_existing_to_tag_and_uses_class_reason() -> None:
    req = parse(
        invite().replace(b"To: Bob <sip:bob@example.com>", b"To: <sip:bob@example.com>;tag=x")
    )
    assert isinstance(req, Request)
    resp = make_response(req, 499, to_tag="y", body=b"hi")
    assert resp.to.tag == "x" and resp.reason == "Client Error" and resp.body == b"hi"


def test_error_response_is_built_from_a_refused_request() -> None:
    data = invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    with pytest.raises(SipParseError) as info:
        parse(data)
    resp = make_error_response(data, info.value, to_tag="t1")
    assert resp is not None and resp.status == 400 and "does not match" in resp.reason
    assert resp.to.tag == "t1" and resp.headers.get("CSeq") == "1 BYE"
    reparsed = parse(bytes(resp))
    assert isinstance(reparsed, Response) and reparsed.status == 400


def test_no_error_response_for_responses_acks_or_headerless_garbage() -> None:
    error = SipParseError("bad")
    assert make_error_response(b"SIP/2.0 200 OK\r\n\r\n", error) is None
    assert make_error_response(invite().replace(b"INVITE", b"ACK"), error) is None
    assert make_error_response(b"\x00\xff garbage", error) is None


def test_replace_top_via_stamps_received_and_rport() -> None:
    req = parse(invite())
    assert isinstance(req, Request)
    req.replace_top_via(req.via[0].with_params(received="203.0.113.5", rport="41000"))
    assert req.via[0].received == "203.0.113.5" and req.via[0].rport == "41000"
    assert parse(bytes(req)) == req


def test_header_changes_invalidate_cached_views() -> None:
    req = parse(invite())
    assert req.to.tag is None
    req.headers.set("To", str(req.to.with_tag("abc")))
    assert req.to.tag == "abc"


def test_stream_parser_frames_split_and_coalesced_messages() -> None:
    one, two = invite(), invite().replace(b"CSeq: 1", b"CSeq: 2")
    stream = b"\r\n\r\n" + one + b"\r\n\r\n" + two
    parser = StreamParser()
    out: list[object] = []
    for i in range(0, len(stream), 7):
        out += parser.feed(stream[i : i + 7])
    assert out == [parse(one), parse(two)]


def test_stream_parser_reports_a_bad_message_and_carries_on() -> None:
    bad = invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    out = StreamParser().feed(bad + invite())
    assert isinstance(out[0], StreamMessageError) and out[0].data == bad
    assert out[1] == parse(invite())


def test_stream_parser_requires_content_length() -> None:
    no_length = invite(body=b"").replace(b"Content-Length: 0\r\n", b"")
    out = StreamParser().feed(no_length + invite())
    assert isinstance(out[0], SipParseError) and "Content-Length" in out[0].reason
    assert out[1] == parse(invite())


@pytest.mark.parametrize(
    ("data", "keyword"),
    [
        (invite().replace(b"Content-Length: ", b"Content-Length: -"), "invalid Content-Length"),
        (invite(extra="l: 3\r\n"), "conflicting Content-Length"),
        (invite(length=MAX_MESSAGE_BYTES), "exceeds"),
        (b"x" * (MAX_MESSAGE_BYTES + 1), "exceeds"),
    ],
)
def test_stream_parser_gives_up_when_the_stream_cannot_be_framed(data: bytes, keyword: str) -> None:
    with pytest.raises(SipParseError, match=keyword):
        StreamParser().feed(data)


def test_constructed_request_serializes_with_canonical_names() -> None:
    headers = Headers(
        [("v", "SIP/2.0/TCP h;branch=z9hG4bKq"), ("f", "<sip:a@b>;tag=1"), ("t", "<sip:c@d>"),
         ("i", "id1"), ("CSeq", "7 BYE")]
    )  # fmt: skip
    req = Request("BYE", "sip:c@d", headers)
    wire = bytes(req)
    assert wire.startswith(b"BYE sip:c@d SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKq\r\nFrom: ")
    assert parse(wire) == req
