"""SDP parse and serialize (RFC 4566): what real peers send, what RFC 4317 shows, faults by line."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callplane.core.sdp import (
    Attribute,
    Codec,
    Connection,
    Line,
    MediaDescription,
    Origin,
    RtcpAddress,
    SdpError,
    SessionDescription,
    parse,
)
from callplane.core.sip.errors import RemoteProtocolError


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# What SIPp's built-in uac scenario sends (sipp -sn uac), with its keywords filled in.
SIPP_UAC = crlf(
    "v=0\n"
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1\n"
    "s=-\n"
    "c=IN IP4 127.0.0.1\n"
    "t=0 0\n"
    "m=audio 6000 RTP/AVP 0\n"
    "a=rtpmap:0 PCMU/8000\n"
)

# SIPp's uac_pcap scenario: PCMA and RFC 4733 digits 0-11 and flash.
SIPP_UAC_PCAP = crlf(
    "v=0\n"
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1\n"
    "s=-\n"
    "c=IN IP4 127.0.0.1\n"
    "t=0 0\n"
    "m=audio 6000 RTP/AVP 8 101\n"
    "a=rtpmap:8 PCMA/8000\n"
    "a=rtpmap:101 telephone-event/8000\n"
    "a=fmtp:101 0-11,16\n"
)

# baresip 3.x offering opus, G.722, G.711 and telephone-event, with its usual extras.
BARESIP_OFFER = crlf(
    "v=0\n"
    "o=- 1687363812 3116470926 IN IP4 192.168.1.23\n"
    "s=-\n"
    "c=IN IP4 192.168.1.23\n"
    "t=0 0\n"
    "a=tool:baresip 3.10.1\n"
    "m=audio 10124 RTP/AVP 96 9 0 8 101\n"
    "b=AS:128\n"
    "a=rtpmap:96 opus/48000/2\n"
    "a=fmtp:96 stereo=1;sprop-stereo=1\n"
    "a=rtpmap:9 G722/8000\n"
    "a=rtpmap:0 PCMU/8000\n"
    "a=rtpmap:8 PCMA/8000\n"
    "a=rtpmap:101 telephone-event/8000\n"
    "a=fmtp:101 0-15\n"
    "a=rtcp-rsize\n"
    "a=label:1\n"
    "a=sendrecv\n"
    "a=ptime:20\n"
)

# baresip on an IPv6 network, RTCP multiplexed and on an explicit port.
BARESIP_IPV6 = crlf(
    "v=0\n"
    "o=- 938431005 2102467389 IN IP6 2001:db8::23\n"
    "s=-\n"
    "c=IN IP6 2001:db8::23\n"
    "t=0 0\n"
    "m=audio 10200 RTP/AVP 0 8 101\n"
    "a=rtpmap:0 PCMU/8000\n"
    "a=rtpmap:8 PCMA/8000\n"
    "a=rtpmap:101 telephone-event/8000\n"
    "a=fmtp:101 0-15\n"
    "a=rtcp:10201 IN IP6 2001:db8::23\n"
    "a=rtcp-mux\n"
    "a=sendrecv\n"
)

# RFC 4317 §2.8: the answer sends video to another host than audio (media-level c=).
RFC4317_2_8_ANSWER = crlf(
    "v=0\n"
    "o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com\n"
    "s= \n"
    "c=IN IP4 host.biloxi.example.com\n"
    "t=0 0\n"
    "m=audio 49174 RTP/AVP 0\n"
    "a=rtpmap:0 PCMU/8000\n"
    "m=video 49172 RTP/AVP 32\n"
    "c=IN IP4 otherhost.biloxi.example.com\n"
    "a=rtpmap:32 MPV/90000\n"
)

# RFC 4566 §5's own example: every optional line type, in order.
RFC4566_EXAMPLE = crlf(
    "v=0\n"
    "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5\n"
    "s=SDP Seminar\n"
    "i=A Seminar on the session description protocol\n"
    "u=http://www.example.com/seminars/sdp.pdf\n"
    "e=j.doe@example.com (Jane Doe)\n"
    "c=IN IP4 224.2.17.12/127\n"
    "t=2873397496 2873404696\n"
    "a=recvonly\n"
    "m=audio 49170 RTP/AVP 0\n"
    "m=video 51372 RTP/AVP 99\n"
    "a=rtpmap:99 h263-1998/90000\n"
)

REAL_BODIES = [
    SIPP_UAC,
    SIPP_UAC_PCAP,
    BARESIP_OFFER,
    BARESIP_IPV6,
    RFC4317_2_8_ANSWER,
    RFC4566_EXAMPLE,
]


@pytest.mark.parametrize("body", REAL_BODIES)
def test_real_bodies_serialize_back_to_the_same_bytes(body: bytes) -> None:
    assert bytes(parse(body)) == body


def test_sipp_offer_reads_as_pcmu_at_its_address() -> None:
    sdp = parse(SIPP_UAC)
    assert sdp.origin == Origin("user1", 53655765, 2353687637, Connection("127.0.0.1"))
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 6000, "RTP/AVP")
    assert audio.codecs == (Codec("PCMU", 8000, 1, 0),)
    assert sdp.connection_of(audio) == Connection("127.0.0.1", "IP4")
    assert sdp.direction_of(audio) == "sendrecv"


def test_baresip_offer_lists_codecs_in_its_order_with_fmtp() -> None:
    sdp = parse(BARESIP_OFFER)
    (audio,) = sdp.media
    assert [c.rtpmap for c in audio.codecs] == [
        "opus/48000/2",
        "G722/8000",
        "PCMU/8000",
        "PCMA/8000",
        "telephone-event/8000",
    ]
    assert audio.codecs[0].fmtp == "stereo=1;sprop-stereo=1"
    assert audio.codecs[-1] == Codec("telephone-event", 8000, 1, 101, "0-15")
    assert audio.ptime_ms == 20
    assert audio.direction == "sendrecv"
    assert sdp.attributes == (Attribute("tool", "baresip 3.10.1"),)
    assert audio.other_lines == (Line("b", "AS:128"),)
    assert Attribute("label", "1") in audio.attributes


def test_ipv6_connection_and_rtcp_attributes() -> None:
    sdp = parse(BARESIP_IPV6)
    (audio,) = sdp.media
    assert sdp.connection == Connection("2001:db8::23", "IP6")
    assert audio.rtcp == RtcpAddress(10201, Connection("2001:db8::23", "IP6"))
    assert audio.rtcp_mux


def test_media_level_connection_overrides_the_session_one() -> None:
    sdp = parse(RFC4317_2_8_ANSWER)
    audio, video = sdp.media
    assert sdp.connection_of(audio) == Connection("host.biloxi.example.com")
    assert sdp.connection_of(video) == Connection("otherhost.biloxi.example.com")


def test_session_level_direction_applies_to_media_without_one() -> None:
    sdp = parse(RFC4566_EXAMPLE)
    assert [sdp.direction_of(m) for m in sdp.media] == ["recvonly", "recvonly"]
    assert sdp.connection is not None
    assert sdp.connection.host == "224.2.17.12"
    assert sdp.session_name == "SDP Seminar"
    assert [line.letter for line in sdp.other_lines] == ["i", "u", "e"]


def test_bare_lf_line_ends_are_accepted_and_crlf_is_written() -> None:
    body = SIPP_UAC.replace(b"\r\n", b"\n")
    assert bytes(parse(body)) == SIPP_UAC


def test_static_payload_types_need_no_rtpmap() -> None:
    sdp = parse(
        crlf(
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n"
            "m=audio 4000 RTP/AVP 8 0 18 13\n"
        )
    )
    assert [(c.name, c.payload_type) for c in sdp.media[0].codecs] == [
        ("PCMA", 8),
        ("PCMU", 0),
        ("G729", 18),
        ("CN", 13),
    ]


def test_dynamic_payload_type_without_rtpmap_is_not_a_codec() -> None:
    sdp = parse(
        crlf(
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n"
            "m=audio 4000 RTP/AVP 0 97\n"
        )
    )
    assert [c.payload_type for c in sdp.media[0].codecs] == [0]
    assert sdp.media[0].payload_types == (0, 97)


def test_description_built_in_code_serializes_as_rfc_4566_orders_lines() -> None:
    sdp = SessionDescription(
        Origin("-", 7, 8, Connection("10.0.0.1")),
        connection=Connection("10.0.0.1"),
        attributes=(Attribute("sendonly"),),
        media=(
            MediaDescription(
                "audio",
                4000,
                "RTP/AVP",
                ("0",),
                attributes=(Attribute("rtpmap", "0 PCMU/8000"),),
                other_lines=(Line("b", "AS:64"), Line("i", "voice")),
            ),
        ),
        other_lines=(Line("k", "prompt"), Line("b", "CT:64"), Line("i", "a call")),
    )
    assert bytes(sdp) == crlf(
        "v=0\no=- 7 8 IN IP4 10.0.0.1\ns=-\ni=a call\nc=IN IP4 10.0.0.1\nb=CT:64\nt=0 0\n"
        "k=prompt\na=sendonly\nm=audio 4000 RTP/AVP 0\ni=voice\nb=AS:64\na=rtpmap:0 PCMU/8000\n"
    )


# --- faults carry the line number -------------------------------------------------------------

GOOD_HEAD = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n"


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("v=1\n", 1, "v=0"),
        ("o=- 1 1 IN IP4 10.0.0.1\n", 1, "v=0"),
        ("v=0\no=- 1 IN IP4 10.0.0.1\n", 2, "6 fields"),
        ("v=0\no=- x 1 IN IP4 10.0.0.1\n", 2, "sess-id"),
        ("v=0\no=- 1 1 ATM NSAP 47.0005\n", 2, "network type"),
        (GOOD_HEAD + "m=audio 70000 RTP/AVP 0\n", 6, "exceeds 65535"),
        (GOOD_HEAD + "m=audio 4000 RTP/AVP 0 128\n", 6, "payload type '128'"),
        (GOOD_HEAD + "m=audio 4000 RTP/AVP PCMU\n", 6, "payload type 'PCMU'"),
        (GOOD_HEAD + "m=audio 4000 RTP/AVP\n", 6, "m= needs"),
        (GOOD_HEAD + "m=audio 4000 RTP/AVP 0\na=rtpmap:0 PCMU\n", 7, "a=rtpmap"),
        (GOOD_HEAD + "m=audio 4000 RTP/AVP 0\na=ptime:twenty\n", 7, "a=ptime"),
        (GOOD_HEAD + "m=audio 4000 RTP/AVP 0\na=ptime:0\n", 7, "positive"),
        (GOOD_HEAD + "m=audio 4000 RTP/AVP 0\na=sendonly:yes\n", 7, "no value"),
        (GOOD_HEAD + "m=audio 4000 RTP/AVP 0\na=rtcp:99999\n", 7, "a=rtcp port"),
        (GOOD_HEAD + "m=audio 4000 RTP/AVP 0\nt=0 0\n", 7, "not allowed in a media"),
        (GOOD_HEAD + "m=audio 4000 RTP/AVP 0\nc=IN IP4 1.2.3.4\nc=IN IP4 1.2.3.5\n", 8, "twice"),
        (GOOD_HEAD + "x=unknown\n", 6, "unknown line type"),
        (GOOD_HEAD + "a=rtpmap\n", 6, "needs a value"),
        (GOOD_HEAD + "a=\n", 6, "attribute name"),
        (GOOD_HEAD + "this is not sdp\n", 6, "<type>=<value>"),
        (GOOD_HEAD + "\nm=audio 4000 RTP/AVP 0\n", 6, "<type>=<value>"),
        ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 300.1.1.1\n", 4, "bad IP4 address"),
        ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 2001:db8::1\n", 4, "given as IP4"),
        ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP6 2001:db8:::1\n", 4, "bad IP6 address"),
        ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n", 5, "no c="),
        ("v=0\no=- 1 1 IN IP4 10.0.0.1\nt=0 0\n", 3, "s= line missing"),
        ("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\n", 3, "t= line missing"),
        ("v=0\ns=-\nt=0 0\n", 3, "o= line missing"),
    ],
)
def test_fault_names_the_line_and_what_is_wrong(body: str, line: int, words: str) -> None:
    with pytest.raises(SdpError) as caught:
        parse(crlf(body))
    assert caught.value.line == line
    assert words in caught.value.fault
    assert f"line {line}" in str(caught.value)
    assert caught.value.status == 400


def test_non_utf8_line_is_reported_by_number() -> None:
    with pytest.raises(SdpError) as caught:
        parse(crlf(GOOD_HEAD) + b"i=\xff\xfe\r\n")
    assert caught.value.line == 6


def test_empty_and_oversized_bodies_are_refused() -> None:
    with pytest.raises(SdpError, match="empty"):
        parse(b"\r\n")
    with pytest.raises(SdpError, match="exceeds"):
        parse(crlf(GOOD_HEAD) + b"a=x:" + b"y" * 70_000 + b"\r\n")


# --- properties --------------------------------------------------------------------------------

TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*+"
tokens = st.text(TOKEN, min_size=1, max_size=10)
text_values = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=20
)
connections = st.one_of(
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: Connection(".".join(map(str, t)))),
    st.sampled_from(["2001:db8::1", "::1", "fe80::a:b:c", "::"]).map(Connection.for_address),
    st.lists(st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8), min_size=2, max_size=3)
    .map(".".join)
    .map(Connection),
)
payload_types = st.integers(0, 127)
attributes = st.one_of(
    st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive", "rtcp-mux"]).map(Attribute),
    st.builds(
        lambda pt, n, r: Attribute("rtpmap", f"{pt} {n}/{r}"),
        payload_types,
        tokens,
        st.integers(1, 96000),
    ),
    st.builds(lambda pt, p: Attribute("fmtp", f"{pt} {p}"), payload_types, tokens),
    st.integers(1, 200).map(lambda ms: Attribute("ptime", str(ms))),
    st.integers(1, 65535).map(lambda port: Attribute("rtcp", str(port))),
    st.builds(
        Attribute,
        tokens.filter(lambda t: t not in ("rtpmap", "fmtp", "ptime", "rtcp")).filter(
            lambda t: t not in ("sendrecv", "sendonly", "recvonly", "inactive", "rtcp-mux")
        ),
        text_values,
    ),
)


def ordered(letters: str) -> st.SearchStrategy[tuple[Line, ...]]:
    """Other lines in RFC 4566 order, as `parse` gives them back."""
    return st.lists(st.tuples(st.sampled_from(letters), text_values), max_size=3).map(
        lambda pairs: tuple(
            Line(letter, value) for letter in letters for (k, value) in pairs if k == letter
        )
    )


media_descriptions = st.builds(
    MediaDescription,
    media=st.sampled_from(["audio", "video", "application"]),
    port=st.integers(0, 65535),
    proto=st.just("RTP/AVP"),
    formats=st.lists(payload_types.map(str), min_size=1, max_size=5).map(tuple),
    connection=st.none() | connections,
    attributes=st.lists(attributes, max_size=6).map(tuple),
    port_count=st.none() | st.integers(1, 4),
    other_lines=ordered("ibk"),
)
sessions = st.builds(
    SessionDescription,
    origin=st.builds(Origin, tokens, st.integers(0, 2**63), st.integers(0, 2**63), connections),
    session_name=text_values | st.just(" "),
    connection=connections,
    timing=st.lists(
        st.tuples(st.integers(0, 2**32), st.integers(0, 2**32)), min_size=1, max_size=2
    ).map(tuple),
    attributes=st.lists(attributes, max_size=3).map(tuple),
    media=st.lists(media_descriptions, max_size=3).map(tuple),
    other_lines=ordered("iuepbrzk"),
)


@given(sessions)
@settings(max_examples=300)
def test_any_description_survives_serialize_then_parse(sdp: SessionDescription) -> None:
    assert parse(bytes(sdp)) == sdp


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_random_bytes_raise_only_sdp_error(data: bytes) -> None:
    with contextlib.suppress(SdpError):
        parse(data)


@given(
    st.lists(
        st.sampled_from([line.decode() for line in SIPP_UAC_PCAP.split(b"\r\n") if line])
        | st.text(max_size=20),
        max_size=12,
    )
)
@settings(max_examples=500)
def test_shuffled_and_garbled_lines_raise_only_remote_errors(lines: list[str]) -> None:
    with contextlib.suppress(RemoteProtocolError):
        parse("\r\n".join(lines).encode("utf-8", "surrogatepass"))
