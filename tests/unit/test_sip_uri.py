"""SIP/SIPS/tel URI parsing and serialization (RFC 3261 §19.1, §25.1; RFC 3966)."""

from __future__ import annotations

import pytest

from callplane.core.sip.errors import SipParseError
from callplane.core.sip.uri import SipUri, parse_uri


def test_full_sip_uri_parses_into_its_parts() -> None:
    uri = parse_uri(
        "sips:alice:secret@Example.COM:5061;transport=tcp;lr?subject=hi&priority=urgent"
    )
    assert uri == SipUri(
        "sips",
        "alice",
        "secret",
        "Example.COM",
        5061,
        (("transport", "tcp"), ("lr", None)),
        (("subject", "hi"), ("priority", "urgent")),
    )
    assert uri.param("TRANSPORT") == "tcp"
    assert uri.has_param("lr") and uri.param("lr") is None
    assert uri.host_port == "Example.COM:5061"


def test_scheme_is_lower_cased_and_serialization_round_trips() -> None:
    text = "sip:bob@192.0.2.4;maddr=239.255.255.1;ttl=15"
    assert str(parse_uri(text)) == text
    assert parse_uri("SIP:bob@host").scheme == "sip"


def test_ipv6_reference_keeps_brackets() -> None:
    uri = parse_uri("sip:alice@[2001:db8::10]:5070")
    assert (uri.host, uri.port) == ("[2001:db8::10]", 5070)
    assert str(uri) == "sip:alice@[2001:db8::10]:5070"


def test_bad_ipv6_reference_is_rejected() -> None:
    with pytest.raises(SipParseError, match="IPv6"):
        parse_uri("sip:alice@[2001:db8:::1:::2]")


def test_user_part_may_hold_semicolons_and_escapes() -> None:
    uri = parse_uri("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u%40example.net"
    assert uri.user_unescaped == "user;par=u@example.net"
    assert uri.host == "example.com" and uri.params == ()


def test_escaped_params_are_found_by_their_decoded_names() -> None:
    uri = parse_uri("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
    assert uri.user_unescaped == "caller"
    assert uri.has_param("lr")
    assert uri.param("name") == "value%41"


def test_uri_without_user() -> None:
    uri = parse_uri("sip:pbx.example.com")
    assert uri.user is None and uri.password is None and uri.host == "pbx.example.com"


def test_tel_uri_keeps_number_in_user() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert uri.scheme == "tel" and uri.user == "+1-201-555-0123" and uri.host == ""
    assert uri.param("phone-context") == "example.com"
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


def test_unknown_scheme_is_416() -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri("http://www.example.com")
    assert info.value.status == 416
    assert "unsupported URI scheme 'http'" in info.value.reason


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("<sip:user@example.com>", "bad URI"),
        ("sip:user@example.com:70000", "port"),
        ("sip:user@exa mple.com", "bad URI"),
        ("sip:us%zzer@example.com", "escape"),
        ("sip:user@", "bad URI"),
        ("nocolon", "bad URI"),
        ("sip:a b@example.com", "user"),
    ],
)
def test_malformed_uris_are_rejected_with_400(text: str, keyword: str) -> None:
    with pytest.raises(SipParseError, match=keyword) as info:
        parse_uri(text)
    assert info.value.status == 400


def test_with_replaces_fields() -> None:
    uri = parse_uri("sip:alice@example.com")
    assert str(uri.with_(host="192.0.2.1", port=5062)) == "sip:alice@192.0.2.1:5062"
