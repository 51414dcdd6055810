"""Offer/answer (RFC 3264): codec choice, direction, rejection, hold, and RFC 4317's examples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callplane.core.offer_answer import (
    DEFAULT_CODECS,
    DTMF_EVENTS,
    OPUS,
    PCMA,
    PCMU,
    Negotiated,
    NoCommonCodec,
    answer_offer,
    is_hold,
    make_offer,
    negotiated,
    reverse,
    with_direction,
)
from callplane.core.sdp import (
    Attribute,
    Codec,
    Connection,
    Direction,
    SdpError,
    SessionDescription,
    parse,
)
from callplane.core.sip.errors import LocalProtocolError

ILBC = Codec("iLBC", 8000, 1, 97)
G729 = Codec("G729", 8000, 1, 18)


def sdp(text: str) -> SessionDescription:
    """Parse an RFC 4317 example; its s= line holds a single space (RFC 4317 §1)."""
    return parse(text.replace("s=\n", "s= \n").replace("\n", "\r\n").encode())


def alice(media: str, version: int = 2890844526, host: str = "host.atlanta.example.com") -> str:
    return (
        f"v=0\no=alice 2890844526 {version} IN IP4 host.atlanta.example.com\ns=\n"
        f"c=IN IP4 {host}\nt=0 0\n{media}"
    )


def bob(media: str, version: int = 2808844564, host: str = "host.biloxi.example.com") -> str:
    return (
        f"v=0\no=bob 2808844564 {version} IN IP4 host.biloxi.example.com\ns=\n"
        f"c=IN IP4 {host}\nt=0 0\n{media}"
    )


AUDIO_VIDEO_OFFER = alice(
    "m=audio 49170 RTP/AVP 0 8 97\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n"
    "a=rtpmap:97 iLBC/8000\nm=video 51372 RTP/AVP 31 32\na=rtpmap:31 H261/90000\n"
    "a=rtpmap:32 MPV/90000\n"
)


def shape(description: SessionDescription) -> list[tuple[str, bool, tuple[str, ...]]]:
    """Each m= line as (media, accepted, formats): what an answer decides, addresses aside."""
    return [(m.media, m.port != 0, m.formats) for m in description.media]


# --- making offers -----------------------------------------------------------------------------


def test_offer_lists_our_codecs_with_dtmf_ptime_and_direction() -> None:
    offer = make_offer("192.0.2.10", 40000, DEFAULT_CODECS, session_id=5, version=1)
    assert bytes(offer) == (
        b"v=0\r\no=- 5 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
    assert parse(bytes(offer)) == offer


def test_offer_on_ipv6_uses_ip6_connection_and_keeps_opus_stereo_declaration() -> None:
    offer = make_offer(
        "2001:db8::10", 40000, [OPUS, PCMU], direction="sendonly", session_id=1, version=2
    )
    assert offer.connection == Connection("2001:db8::10", "IP6")
    assert offer.origin.connection.address_type == "IP6"
    (audio,) = offer.media
    assert [c.rtpmap for c in audio.codecs] == ["opus/48000/2", "PCMU/8000"]
    assert audio.codecs[0].fmtp == "useinbandfec=1"
    assert audio.direction == "sendonly"


@pytest.mark.parametrize(
    ("address", "port", "codecs"),
    [
        ("192.0.2.10", 0, DEFAULT_CODECS),
        ("192.0.2.10", 70000, DEFAULT_CODECS),
        ("", 4000, DEFAULT_CODECS),
        ("192.0.2.10", 4000, []),
        ("192.0.2.10", 4000, [PCMU, Codec("G722", 8000, 1, 0)]),
    ],
)
def test_offer_refuses_our_own_mistakes(address: str, port: int, codecs: list[Codec]) -> None:
    with pytest.raises(LocalProtocolError):
        make_offer(address, port, codecs, session_id=1, version=1)


# --- answering: codec choice --------------------------------------------------------------------

BARESIP_OFFER = parse(
    b"v=0\r\no=- 1687363812 3116470926 IN IP4 192.168.1.23\r\ns=-\r\nc=IN IP4 192.168.1.23\r\n"
    b"t=0 0\r\nm=audio 10124 RTP/AVP 96 9 0 8 101\r\na=rtpmap:96 opus/48000/2\r\n"
    b"a=fmtp:96 stereo=1;sprop-stereo=1\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
    b"a=sendrecv\r\na=ptime:20\r\n"
)


def test_answer_to_baresip_picks_its_first_codec_among_ours_and_dtmf() -> None:
    answer = answer_offer(BARESIP_OFFER, "192.0.2.10", 40000, DEFAULT_CODECS, version=1)
    (audio,) = answer.media
    assert audio.formats == ("0", "101")
    assert audio.codecs == (PCMU, Codec("telephone-event", 8000, 1, 101, "0-16"))
    assert audio.direction == "sendrecv"
    assert answer.connection == Connection("192.0.2.10")
    assert parse(bytes(answer)) == answer


def test_answer_prefers_opus_when_both_have_it_with_the_offerers_number() -> None:
    answer = answer_offer(BARESIP_OFFER, "192.0.2.10", 40000, [PCMU, OPUS, DTMF_EVENTS])
    (audio,) = answer.media
    assert audio.formats == ("96", "101")
    assert audio.codecs[0] == Codec("opus", 48000, 2, 96, "useinbandfec=1")
    result = negotiated(BARESIP_OFFER, answer, role="answerer")
    assert (result.payload_type, result.codec.name, result.telephone_event_pt) == (96, "opus", 101)


def test_answer_follows_the_offerers_order_not_ours() -> None:
    offer = make_offer("198.51.100.7", 5004, [PCMA, PCMU], session_id=1, version=1)
    answer = answer_offer(offer, "192.0.2.10", 40000, [PCMU, PCMA])
    assert answer.media[0].formats == ("8",)


def test_dynamic_payload_types_keep_the_offerers_numbers() -> None:
    offer = make_offer(
        "198.51.100.7",
        5004,
        [Codec("PCMA", 8000, 1, 8), Codec("telephone-event", 8000, 1, 96, "0-15")],
        session_id=1,
        version=1,
    )
    answer = answer_offer(offer, "192.0.2.10", 40000, DEFAULT_CODECS)
    assert answer.media[0].formats == ("8", "96")
    assert answer.media[0].attribute_values("fmtp") == ["96 0-16"]
    for role in ("offerer", "answerer"):
        assert negotiated(offer, answer, role=role).telephone_event_pt == 96


def test_offerer_sends_with_the_numbers_the_answer_chose() -> None:
    # RFC 4317 §2.3: Bob renumbers iLBC from 97 to 99; Alice sends 99, Bob sends 97.
    offer = sdp(AUDIO_VIDEO_OFFER)
    answer = sdp(
        bob(
            "m=audio 49172 RTP/AVP 99\na=rtpmap:99 iLBC/8000\n"
            "m=video 51374 RTP/AVP 31\na=rtpmap:31 H261/90000\n"
        )
    )
    assert negotiated(offer, answer) == Negotiated(
        payload_type=99,
        codec=Codec("iLBC", 8000, 1, 99),
        telephone_event_pt=None,
        remote_address="host.biloxi.example.com",
        remote_port=49172,
        direction="sendrecv",
        ptime_ms=20,
        remote_rtcp_port=49173,
        rtcp_mux=False,
    )
    bobs_view = negotiated(offer, answer, role="answerer")
    assert (bobs_view.payload_type, bobs_view.remote_port) == (97, 49170)
    assert bobs_view.remote_address == "host.atlanta.example.com"


def test_sipp_offer_without_rtpmap_for_static_types_is_answered() -> None:
    offer = parse(
        b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
        b"t=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-11,16\r\n"
    )
    answer = answer_offer(offer, "127.0.0.1", 40000, DEFAULT_CODECS)
    result = negotiated(offer, answer, role="answerer")
    assert (result.codec.name, result.payload_type, result.telephone_event_pt) == ("PCMA", 8, 101)
    assert (result.remote_address, result.remote_port, result.remote_rtcp_port) == (
        "127.0.0.1",
        6000,
        6001,
    )


def test_rtcp_attribute_and_mux_give_the_remote_rtcp_port() -> None:
    offer = parse(
        b"v=0\r\no=- 1 1 IN IP6 2001:db8::23\r\ns=-\r\nc=IN IP6 2001:db8::23\r\nt=0 0\r\n"
        b"m=audio 10200 RTP/AVP 0\r\na=rtcp:10301\r\na=rtcp-mux\r\na=ptime:30\r\n"
    )
    plain = answer_offer(offer, "2001:db8::10", 40000)
    assert not plain.media[0].rtcp_mux
    result = negotiated(offer, plain, role="answerer")
    assert (result.remote_rtcp_port, result.rtcp_mux, result.ptime_ms) == (10301, False, 30)
    assert result.remote_address == "2001:db8::23"
    muxed = answer_offer(offer, "2001:db8::10", 40000, rtcp_mux=True)
    result = negotiated(offer, muxed, role="answerer")
    assert (result.remote_rtcp_port, result.rtcp_mux) == (10200, True)
    assert muxed.media[0].ptime_ms == 30


# --- answering: direction -----------------------------------------------------------------------

# RFC 3264 §6.1: offered direction x what we want (None: no preference) -> answered direction.
DIRECTION_TABLE: dict[tuple[Direction, Direction | None], Direction] = {
    ("sendrecv", None): "sendrecv",
    ("sendrecv", "sendrecv"): "sendrecv",
    ("sendrecv", "sendonly"): "sendonly",
    ("sendrecv", "recvonly"): "recvonly",
    ("sendrecv", "inactive"): "inactive",
    ("sendonly", None): "recvonly",
    ("sendonly", "sendrecv"): "recvonly",
    ("sendonly", "sendonly"): "inactive",
    ("sendonly", "recvonly"): "recvonly",
    ("sendonly", "inactive"): "inactive",
    ("recvonly", None): "sendonly",
    ("recvonly", "sendrecv"): "sendonly",
    ("recvonly", "sendonly"): "sendonly",
    ("recvonly", "recvonly"): "inactive",
    ("recvonly", "inactive"): "inactive",
    ("inactive", None): "inactive",
    ("inactive", "sendrecv"): "inactive",
    ("inactive", "sendonly"): "inactive",
    ("inactive", "recvonly"): "inactive",
    ("inactive", "inactive"): "inactive",
}


def test_answer_direction_mirrors_the_offer_for_every_pair() -> None:
    for (offered, wanted), expected in DIRECTION_TABLE.items():
        offer = make_offer("198.51.100.7", 5004, direction=offered, session_id=1, version=1)
        answer = answer_offer(offer, "192.0.2.10", 40000, direction=wanted)
        assert answer.media[0].direction == expected, (offered, wanted)
        # both sides then agree on who sends
        theirs = negotiated(offer, answer, role="offerer").direction
        ours = negotiated(offer, answer, role="answerer").direction
        assert theirs == reverse(ours) == reverse(expected), (offered, wanted)


def test_session_level_direction_of_the_offer_is_mirrored() -> None:
    offer = parse(
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=sendonly\r\n"
        b"m=audio 4000 RTP/AVP 0\r\n"
    )
    assert answer_offer(offer, "192.0.2.10", 40000).media[0].direction == "recvonly"


# --- answering: rejection -----------------------------------------------------------------------


def test_no_common_codec_raises_488_naming_both_sides() -> None:
    offer = make_offer("198.51.100.7", 5004, [G729, DTMF_EVENTS], session_id=1, version=1)
    with pytest.raises(NoCommonCodec) as caught:
        answer_offer(offer, "192.0.2.10", 40000, DEFAULT_CODECS)
    assert caught.value.status == 488
    assert "G729/8000" in caught.value.reason
    assert "PCMU/8000" in caught.value.reason


def test_telephone_event_alone_is_no_common_codec() -> None:
    offer = make_offer("198.51.100.7", 5004, [DTMF_EVENTS], session_id=1, version=1)
    with pytest.raises(NoCommonCodec):
        answer_offer(offer, "192.0.2.10", 40000)


@pytest.mark.parametrize(
    ("media", "why"),
    [
        ("m=video 51372 RTP/AVP 31\n", "no audio stream"),
        ("m=audio 0 RTP/AVP 0\n", "no audio stream"),
        ("m=audio 49170 RTP/SAVP 0\n", "RTP/SAVP"),
        ("", "no audio stream"),  # RFC 4317 §5.1: an offer with no media at all
    ],
)
def test_offer_without_acceptable_audio_is_refused(media: str, why: str) -> None:
    with pytest.raises(NoCommonCodec, match=why):
        answer_offer(sdp(alice(media)), "192.0.2.10", 40000)


def test_only_one_audio_stream_is_accepted_and_the_rest_rejected_in_place() -> None:
    offer = sdp(
        alice(
            "m=audio 49170 RTP/AVP 0\nm=video 51372 RTP/AVP 31\nm=audio 49180 RTP/AVP 8\n"
            "m=audio 0 RTP/AVP 0\n"
        )
    )
    answer = answer_offer(offer, "192.0.2.10", 40000)
    assert shape(answer) == [
        ("audio", True, ("0",)),
        ("video", False, ("31",)),
        ("audio", False, ("8",)),
        ("audio", False, ("0",)),
    ]


def test_negotiated_refuses_an_answer_that_rejects_everything_or_miscounts() -> None:
    offer = sdp(AUDIO_VIDEO_OFFER)
    with pytest.raises(NoCommonCodec):
        negotiated(offer, sdp(bob("m=audio 0 RTP/AVP 0\nm=video 0 RTP/AVP 31\n")))
    with pytest.raises(SdpError, match="1 m= lines, offer 2"):
        negotiated(offer, sdp(bob("m=audio 49174 RTP/AVP 0\n")))


# --- hold and resume ----------------------------------------------------------------------------


def test_hold_and_resume_change_direction_and_raise_the_version() -> None:
    offer = make_offer("192.0.2.10", 40000, session_id=9, version=1)
    held = with_direction(offer, "sendonly")
    assert held.origin.session_version == 2
    assert held.media[0].direction == "sendonly"
    assert held.media[0].attributes.count(Attribute("sendonly")) == 1
    assert is_hold(held)
    resumed = with_direction(held, "sendrecv")
    assert resumed.origin.session_version == 3
    assert resumed.media[0].direction == "sendrecv"
    assert not is_hold(resumed)
    assert with_direction(offer, "inactive").media[0].direction == "inactive"
    assert is_hold(with_direction(offer, "inactive"))


def test_hold_leaves_rejected_streams_and_drops_session_level_direction() -> None:
    offer = sdp(alice("a=recvonly\nm=audio 49170 RTP/AVP 0\nm=video 0 RTP/AVP 31\n"))
    held = with_direction(offer, "sendonly")
    assert held.attributes == ()
    assert held.media[1] == offer.media[1]
    assert held.direction_of(held.media[0]) == "sendonly"


def test_is_hold_reads_direction_and_legacy_zero_address() -> None:
    assert not is_hold(
        make_offer("192.0.2.10", 4000, direction="recvonly", session_id=1, version=1)
    )
    assert is_hold(sdp(alice("m=audio 23442 RTP/AVP 97\na=rtpmap:97 iLBC/8000\n", host="0.0.0.0")))
    assert not is_hold(sdp(alice("m=audio 0 RTP/AVP 0\na=sendonly\n")))


def test_with_direction_refuses_unknown_direction() -> None:
    offer = make_offer("192.0.2.10", 40000, session_id=9, version=1)
    with pytest.raises(LocalProtocolError):
        with_direction(offer, "sideways")  # type: ignore[arg-type]


# --- RFC 4317 examples --------------------------------------------------------------------------


def test_rfc4317_2_1_audio_and_video_we_take_pcmu_and_reject_video() -> None:
    offer = sdp(AUDIO_VIDEO_OFFER)
    answer = answer_offer(offer, "host.biloxi.example.com", 49174, [PCMU])
    assert shape(answer) == [("audio", True, ("0",)), ("video", False, ("31", "32"))]
    bobs = sdp(
        bob(
            "m=audio 49174 RTP/AVP 0\na=rtpmap:0 PCMU/8000\nm=video 49170 RTP/AVP 32\n"
            "a=rtpmap:32 MPV/90000\n"
        )
    )
    assert shape(answer)[0] == shape(bobs)[0]
    result = negotiated(offer, bobs)
    assert (result.codec.name, result.remote_address, result.remote_port) == (
        "PCMU",
        "host.biloxi.example.com",
        49174,
    )


def test_rfc4317_2_2_answer_with_two_codecs_uses_its_first() -> None:
    answer = sdp(
        bob(
            "m=audio 49172 RTP/AVP 0 8\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n"
            "m=video 0 RTP/AVP 31\na=rtpmap:31 H261/90000\n"
        )
    )
    result = negotiated(sdp(AUDIO_VIDEO_OFFER), answer)
    assert (result.codec.name, result.payload_type, result.remote_port) == ("PCMU", 0, 49172)


def test_rfc4317_2_4_two_audio_streams_the_events_only_one_is_rejected() -> None:
    offer = sdp(
        alice(
            "m=audio 49170 RTP/AVP 0 97\na=rtpmap:0 PCMU/8000\na=rtpmap:97 iLBC/8000\n"
            "m=audio 49172 RTP/AVP 98\na=rtpmap:98 telephone-event/8000\na=sendonly\n"
        )
    )
    answer = answer_offer(offer, "host.biloxi.example.com", 49172, [ILBC, DTMF_EVENTS])
    assert shape(answer) == [("audio", True, ("97",)), ("audio", False, ("98",))]
    bobs = sdp(
        bob(
            "m=audio 49172 RTP/AVP 97\na=rtpmap:97 iLBC/8000\n"
            "m=audio 49174 RTP/AVP 98\na=rtpmap:98 telephone-event/8000\na=recvonly\n"
        )
    )
    result = negotiated(offer, bobs)
    assert (result.codec.name, result.remote_port, result.direction) == ("iLBC", 49172, "sendrecv")


def test_rfc4317_2_6_first_stream_declined_second_accepted_as_bob_does() -> None:
    offer = sdp(
        alice(
            "m=audio 49170 RTP/AVP 0\na=rtpmap:0 PCMU/8000\nm=audio 51372 RTP/AVP 97 101\n"
            "a=rtpmap:97 iLBC/8000\na=rtpmap:101 telephone-event/8000\n"
        )
    )
    bobs = sdp(
        bob(
            "m=audio 0 RTP/AVP 0\na=rtpmap:0 PCMU/8000\nm=audio 49170 RTP/AVP 97 101\n"
            "a=rtpmap:97 iLBC/8000\na=rtpmap:101 telephone-event/8000\n"
        )
    )
    answer = answer_offer(
        offer, "host.biloxi.example.com", 49170, [ILBC, Codec("telephone-event", 8000, 1, 100)]
    )
    assert shape(answer) == shape(bobs)
    result = negotiated(offer, bobs)
    assert (result.codec.name, result.telephone_event_pt, result.remote_port) == (
        "iLBC",
        101,
        49170,
    )


def test_rfc4317_2_8_audio_goes_to_the_session_address() -> None:
    bobs = sdp(
        bob(
            "m=audio 49174 RTP/AVP 0\na=rtpmap:0 PCMU/8000\nm=video 49172 RTP/AVP 32\n"
            "c=IN IP4 otherhost.biloxi.example.com\na=rtpmap:32 MPV/90000\n"
        )
    )
    result = negotiated(sdp(AUDIO_VIDEO_OFFER), bobs)
    assert (result.remote_address, result.remote_port) == ("host.biloxi.example.com", 49174)


def test_rfc4317_3_1_answerer_holds_then_resumes_by_new_offer() -> None:
    offer = sdp(alice("m=audio 49170 RTP/AVP 0 97\na=rtpmap:0 PCMU/8000\na=rtpmap:97 iLBC/8000\n"))
    bobs = sdp(
        bob(
            "m=audio 49172 RTP/AVP 97\na=rtpmap:97 iLBC/8000\na=sendonly\n",
            host="placeholder.biloxi.example.com",
        )
    )
    ours = answer_offer(
        offer, "placeholder.biloxi.example.com", 49172, [ILBC], direction="sendonly"
    )
    assert shape(ours) == shape(bobs)
    assert ours.media[0].direction == "sendonly"
    assert is_hold(bobs)
    assert negotiated(offer, bobs).direction == "recvonly"  # Alice only listens
    resume = sdp(bob("m=audio 49170 RTP/AVP 97\na=rtpmap:97 iLBC/8000\n", version=2808844565))
    assert not is_hold(resume)
    alices = answer_offer(resume, "host.atlanta.example.com", 49178, (*DEFAULT_CODECS, ILBC))
    assert alices.media[0].direction == "sendrecv"
    assert alices.media[0].formats == ("97",)


def test_rfc4317_3_2_hold_one_of_two_streams() -> None:
    second_offer = sdp(
        bob(
            "m=audio 49172 RTP/AVP 97\na=rtpmap:97 iLBC/8000\na=sendonly\n"
            "m=audio 49174 RTP/AVP 98\na=rtpmap:98 telephone-event/8000\na=recvonly\n",
            version=2808844565,
        )
    )
    assert is_hold(second_offer)
    answer = answer_offer(second_offer, "host.atlanta.example.com", 49170, [ILBC, DTMF_EVENTS])
    assert shape(answer) == [("audio", True, ("97",)), ("audio", False, ("98",))]
    assert answer.media[0].direction == "recvonly"


def test_rfc4317_4_3_deleted_video_stays_deleted() -> None:
    second_offer = sdp(
        bob(
            "m=audio 49174 RTP/AVP 97\na=rtpmap:97 iLBC/8000\nm=video 0 RTP/AVP 31\n"
            "a=rtpmap:31 H261/90000\n",
            version=2808844565,
        )
    )
    answer = answer_offer(second_offer, "host.atlanta.example.com", 49170, [ILBC])
    assert shape(answer) == [("audio", True, ("97",)), ("video", False, ("31",))]


def test_rfc4317_5_2_offer_at_zero_address_is_held_until_a_real_one() -> None:
    offer = sdp(alice("m=audio 23442 RTP/AVP 97\na=rtpmap:97 iLBC/8000\n", host="0.0.0.0"))
    assert is_hold(offer)
    answer = answer_offer(offer, "host.biloxi.example.com", 49170, [ILBC])
    assert answer.media[0].direction == "sendrecv"
    assert negotiated(offer, answer, role="answerer").direction == "recvonly"  # nowhere to send
    second = sdp(alice("m=audio 49170 RTP/AVP 97\na=rtpmap:97 iLBC/8000\n", version=2890844527))
    assert not is_hold(second)
    answer = answer_offer(second, "host.biloxi.example.com", 49170, [ILBC])
    assert negotiated(second, answer, role="answerer").direction == "sendrecv"


def test_rfc4317_5_3_answer_at_zero_address_stops_the_offerer_sending() -> None:
    offer = sdp(alice("m=audio 49170 RTP/AVP 97\na=rtpmap:97 iLBC/8000\n"))
    bobs = sdp(bob("m=audio 9322 RTP/AVP 97\na=rtpmap:97 iLBC/8000\n", host="0.0.0.0"))
    result = negotiated(offer, bobs)
    assert (result.direction, result.sends, result.receives) == ("recvonly", False, True)
    assert negotiated(offer, bobs, role="answerer").direction == "sendonly"


# --- properties ---------------------------------------------------------------------------------

VOICE = [PCMU, PCMA, G729, ILBC, OPUS, Codec("G722", 8000, 1, 9)]
numbers = st.integers(96, 127)


@st.composite
def codec_lists(draw: st.DrawFn) -> list[Codec]:
    voices = draw(st.lists(st.sampled_from(VOICE), min_size=1, max_size=4, unique=True))
    codecs = list(voices)
    if draw(st.booleans()):
        codecs.append(DTMF_EVENTS)
    used: set[int] = set()
    out = []
    for codec in codecs:  # renumber dynamic types at random, as real peers do
        pt = (
            codec.payload_type
            if codec.payload_type < 96
            else draw(numbers.filter(lambda n: n not in used))
        )
        used.add(pt)
        out.append(codec.with_payload_type(pt, codec.fmtp))
    return out


@given(
    codec_lists(),
    codec_lists(),
    st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"]),
)
@settings(max_examples=300)
def test_both_sides_agree_on_codec_and_addresses_or_488(
    offered: list[Codec], ours: list[Codec], direction: Direction
) -> None:
    offer = make_offer("198.51.100.7", 5004, offered, direction=direction, session_id=1, version=1)
    common = [
        c for c in offered if c.name != "telephone-event" and any(c.same_format(o) for o in ours)
    ]
    if not common:
        with pytest.raises(NoCommonCodec):
            answer_offer(offer, "192.0.2.10", 40000, ours)
        return
    answer = parse(bytes(answer_offer(offer, "192.0.2.10", 40000, ours)))
    theirs = negotiated(offer, answer, role="offerer")
    mine = negotiated(offer, answer, role="answerer")
    assert theirs.codec.same_format(common[0]) and mine.codec.same_format(common[0])
    assert theirs.payload_type == mine.payload_type == common[0].payload_type
    assert (theirs.remote_address, theirs.remote_port) == ("192.0.2.10", 40000)
    assert (mine.remote_address, mine.remote_port) == ("198.51.100.7", 5004)
    assert theirs.direction == reverse(mine.direction)
    has_events = any(DTMF_EVENTS.same_format(c) for c in ours) and any(
        c.name == "telephone-event" for c in offered
    )
    assert (mine.telephone_event_pt is not None) == has_events
