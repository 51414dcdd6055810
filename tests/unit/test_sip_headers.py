"""Structured header values: Via, name-addr, CSeq, params, Contact lists, digest headers."""

from __future__ import annotations

import pytest

from callplane.core.sip.errors import LocalProtocolError, SipParseError
from callplane.core.sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    format_auth_header,
    parse_auth_header,
    parse_contacts,
    parse_cseq,
    parse_name_addr,
    parse_params,
    parse_via,
)
from callplane.core.sip.uri import parse_uri


def test_via_with_port_and_params() -> None:
    via = parse_via("SIP/2.0/udp 192.0.2.1:5060;branch=z9hG4bK776;rport;received=192.0.2.9")
    assert via == Via(
        "UDP",
        "192.0.2.1",
        5060,
        (("branch", "z9hG4bK776"), ("rport", None), ("received", "192.0.2.9")),
    )
    assert via.branch == "z9hG4bK776" and via.received == "192.0.2.9"
    assert via.rport is None and via.has_param("rport") and via.has_empty_rport


def test_via_with_lws_everywhere_parses() -> None:
    via = parse_via("SIP  / 2.0  / TCP     spindle.example.com   ;   branch  =   z9hG4bK9ikj8")
    assert (via.transport, via.host, via.port, via.branch) == (
        "TCP",
        "spindle.example.com",
        None,
        "z9hG4bK9ikj8",
    )


def test_via_ipv6_and_stamping_round_trip() -> None:
    via = parse_via("SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bKx;rport")
    stamped = via.with_params(received="2001:db8::1", rport="40000")
    assert (
        str(stamped)
        == "SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bKx;rport=40000;received=2001:db8::1"
    )
    assert parse_via(str(stamped)) == stamped
    assert stamped.rport == "40000" and not stamped.has_empty_rport


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP",
        "SIP/2.0/UDP host;;",
        "SIP/2.0 UDP host",
        "SIP/3.0/UDP host",
        "SIP/2.0/UDP h:99999",
    ],
)
def test_bad_via_values_are_rejected(value: str) -> None:
    with pytest.raises(SipParseError, match="bad Via header"):
        parse_via(value)


def test_name_addr_with_quoted_display_and_escapes() -> None:
    addr = parse_name_addr('"J Rosenberg \\\\\\""  <sip:jdrosen@example.com> ; tag = 98asjd8')
    assert addr.display == 'J Rosenberg \\"'
    assert addr.uri == parse_uri("sip:jdrosen@example.com")
    assert addr.tag == "98asjd8"
    assert parse_name_addr(str(addr)) == addr


def test_name_addr_token_display_and_bare_uri_forms() -> None:
    assert parse_name_addr("caller<sip:caller@example.com>;tag=323").display == "caller"
    bare = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam")
    assert bare.display is None and bare.uri.params == ()
    assert bare.params == (("unknownparam", None),)
    bracketed = parse_name_addr("<sip:+19725552222@gw1.example.net;unknownparam>")
    assert bracketed.uri.has_param("unknownparam") and bracketed.params == ()


def test_name_addr_always_serializes_with_angle_brackets() -> None:
    addr = parse_name_addr("sip:alice@example.com;tag=1")
    assert str(addr) == "<sip:alice@example.com>;tag=1"
    assert str(addr.with_tag("2")) == "<sip:alice@example.com>;tag=2"
    assert str(NameAddr("Bob", parse_uri("sip:b@x"))) == '"Bob" <sip:b@x>'


@pytest.mark.parametrize(
    ("value", "keyword"),
    [
        ('"Mr. J. User <sip:j.user@example.com>', "unterminated quoted string"),
        ("Bell, Alexander <sip:a.g.bell@example.com>;tag=43", "display name"),
        ('"Watson, Thomas" < sip:t.watson@example.org >', "whitespace inside <>"),
        ("sip:user@example.com?Route=%3Csip:sip.example.com%3E", "enclosed in <>"),
        ('"Joe" <sip:joe@example.org>;;;;', "parameters"),
        ("<sip:joe@example.org", "'>'"),
    ],
)
def test_malformed_name_addrs_are_rejected(value: str, keyword: str) -> None:
    with pytest.raises(SipParseError, match=keyword):
        parse_name_addr(value)


def test_contacts_star_and_list() -> None:
    assert parse_contacts(["*"]) == "*"
    contacts = parse_contacts(['"A" <sip:a@x>;expires=60', "<sip:b@y>;q=0.5"])
    assert contacts != "*"
    assert [c.param("expires") for c in contacts] == ["60", None]
    with pytest.raises(SipParseError, match="'\\*'"):
        parse_contacts(["*", "<sip:a@x>"])


def test_cseq_bounds() -> None:
    assert parse_cseq("0009   INVITE") == CSeq(9, "INVITE")
    assert str(CSeq(2**31 - 1, "BYE")) == "2147483647 BYE"
    with pytest.raises(SipParseError, match="invalid CSeq"):
        parse_cseq(f"{2**31} INVITE")
    with pytest.raises(SipParseError, match="invalid CSeq"):
        parse_cseq("INVITE 1")


def test_params_keep_quotes_and_accept_missing_leading_semicolon() -> None:
    assert parse_params(';a=1 ; b ;c="x;y"') == (("a", "1"), ("b", None), ("c", '"x;y"'))
    assert parse_params("expires=3600") == (("expires", "3600"),)
    assert parse_params("") == ()


def test_digest_header_round_trip() -> None:
    value = format_auth_header(
        "Digest",
        [("username", 'al"ice', True), ("realm", "pbx", True), ("algorithm", "SHA-256", False)],
    )
    assert value == 'Digest username="al\\"ice", realm="pbx", algorithm=SHA-256'
    assert parse_auth_header(value) == (
        "Digest",
        {"username": 'al"ice', "realm": "pbx", "algorithm": "SHA-256"},
    )


def test_auth_header_unknown_scheme_and_odd_spacing() -> None:
    assert parse_auth_header("NoOneKnowsThisScheme opaque-data=here") == (
        "NoOneKnowsThisScheme",
        {"opaque-data": "here"},
    )
    assert parse_auth_header('Digest  Realm = "a,b" ,NONCE="n"') == (
        "Digest",
        {"realm": "a,b", "nonce": "n"},
    )
    with pytest.raises(SipParseError, match="authentication"):
        parse_auth_header('Digest realm="unterminated')


def test_headers_multimap_semantics() -> None:
    headers = Headers([("v", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2")])
    headers.add("via", "SIP/2.0/UDP c;branch=z9hG4bK3")
    headers.add("Subject", "Hello, world")
    assert next(iter(headers))[0] == "Via"
    assert len(headers.get_all("VIA")) == 2 and len(headers.values("Via")) == 3
    assert headers.remove_first("Via") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert headers.values("Via") == [
        "SIP/2.0/UDP b;branch=z9hG4bK2",
        "SIP/2.0/UDP c;branch=z9hG4bK3",
    ]
    headers.prepend("Via", "SIP/2.0/UDP top;branch=z9hG4bK0")
    assert headers.get("Via") == "SIP/2.0/UDP top;branch=z9hG4bK0"
    assert headers.remove_first("Subject") == "Hello, world" and "Subject" not in headers
    headers.set("Via", "SIP/2.0/UDP only")
    assert headers.get_all("v") == ["SIP/2.0/UDP only"] and next(iter(headers))[0] == "Via"
    headers.remove("Via")
    assert len(headers) == 0 and headers.get("Via", "none") == "none"


def test_headers_values_respect_quotes_and_brackets() -> None:
    headers = Headers([("Contact", '"Bell, A" <sip:a@x;p=1,2>;q=1, <sip:b@y>')])
    assert headers.values("Contact") == ['"Bell, A" <sip:a@x;p=1,2>;q=1', "<sip:b@y>"]


def test_headers_equality_is_case_insensitive_on_names_and_copy_is_independent() -> None:
    a = Headers([("call-id", "x"), ("X-Custom", "1")])
    b = Headers([("i", "x"), ("x-custom", "1")])
    assert a == b
    c = a.copy()
    c.add("X-Other", "2")
    assert a != c and len(a) == 2


def test_headers_refuse_injection() -> None:
    headers = Headers()
    with pytest.raises(LocalProtocolError):
        headers.add("Subject", "hi\r\nVia: evil")
    with pytest.raises(LocalProtocolError):
        headers.add("Bad Name", "x")
