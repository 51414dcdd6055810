"""The SDP offer/answer model (RFC 3264 §5–§8) as pure functions over `SessionDescription`.

Callplane anchors media, so each leg carries exactly one audio stream: `answer_offer` accepts the
first audio m= line that has a voice codec in common with us and rejects every other (port 0, §6);
it answers with one voice codec, the first of the offer's that we support, plus telephone-event
(RFC 4733) when both sides have it, using the offerer's payload type numbers (§6.1). Payload type
numbers in a description are what its writer expects to receive (§5.1), so `negotiated` reports
the remote side's numbers: the ones to send with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from callplane.core.sdp import (
    DIRECTIONS,
    MAX_PAYLOAD_TYPE,
    MAX_PORT,
    NO_SESSION_NAME,
    Attribute,
    Codec,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
)
from callplane.core.sip.errors import LocalProtocolError, RemoteProtocolError

NOT_ACCEPTABLE_HERE = 488  # RFC 3261 §21.4.26: none of the offered media is acceptable
DEFAULT_PTIME_MS = 20  # RFC 3551 §4.5: the default packetization of G.711 and most audio codecs
AUDIO_PROFILES = frozenset({"RTP/AVP"})  # plain RTP; SRTP and DTLS profiles need keys we lack
ORIGIN_USERNAME = "-"  # RFC 4566 §5.2: "-" when the host has no user ids
TELEPHONE_EVENT = "telephone-event"  # RFC 4733 §7.1.1: the media subtype for DTMF events
# Formats that carry no voice and so cannot be a call's codec: RFC 4733 events, comfort noise
# (RFC 3389), redundancy (RFC 2198).
_NOT_VOICE = frozenset({TELEPHONE_EVENT, "cn", "red"})

PCMU = Codec("PCMU", 8000, 1, 0)  # RFC 3551 §4.5.14, static payload type 0
PCMA = Codec("PCMA", 8000, 1, 8)  # RFC 3551 §4.5.14, static payload type 8
# RFC 4733 §3.2: events 0-15 are the DTMF digits, 16 is flash; 101 is the customary dynamic number.
DTMF_EVENTS = Codec(TELEPHONE_EVENT, 8000, 1, 101, "0-16")
# RFC 7587 §7: opus is always declared as 48000/2, whatever it actually carries.
OPUS = Codec("opus", 48000, 2, 111, "useinbandfec=1")
DEFAULT_CODECS = (PCMU, PCMA, DTMF_EVENTS)

_SEND_RECV: dict[Direction, tuple[bool, bool]] = {
    "sendrecv": (True, True),
    "sendonly": (True, False),
    "recvonly": (False, True),
    "inactive": (False, False),
}
_DIRECTION_OF = {flags: direction for direction, flags in _SEND_RECV.items()}


class NoCommonCodec(RemoteProtocolError):
    """No audio stream of the offer can be accepted: no voice codec in common, no audio m= line,
    or an answer that rejected them all. The B2BUA answers 488 (RFC 3264 §6)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, NOT_ACCEPTABLE_HERE)


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What one side of a call does after an offer/answer exchange: the codec and the remote's
    payload type for it, the remote's RFC 4733 payload type, where to send RTP and RTCP, which
    way media flows from this side's point of view, and the packet duration the remote wants."""

    payload_type: int
    codec: Codec
    telephone_event_pt: int | None
    remote_address: str
    remote_port: int
    direction: Direction
    ptime_ms: int
    remote_rtcp_port: int
    rtcp_mux: bool

    @property
    def sends(self) -> bool:
        """Whether this side sends media (sendrecv or sendonly)."""
        return _SEND_RECV[self.direction][0]

    @property
    def receives(self) -> bool:
        """Whether this side expects media (sendrecv or recvonly)."""
        return _SEND_RECV[self.direction][1]


def reverse(direction: Direction) -> Direction:
    """The direction seen from the other side: sendonly <-> recvonly (RFC 3264 §6.1)."""
    send, recv = _SEND_RECV[direction]
    return _DIRECTION_OF[(recv, send)]


def _intersect(a: Direction, b: Direction) -> Direction:
    (send_a, recv_a), (send_b, recv_b) = _SEND_RECV[a], _SEND_RECV[b]
    return _DIRECTION_OF[(send_a and send_b, recv_a and recv_b)]


def _check_local(address: str, port: int, direction: Direction | None) -> None:
    if not address or " " in address:
        raise LocalProtocolError(f"bad media address {address!r}")
    if not 0 < port <= MAX_PORT:
        raise LocalProtocolError(f"media port {port} is not 1-{MAX_PORT}")
    if direction is not None and direction not in DIRECTIONS:
        raise LocalProtocolError(f"unknown direction {direction!r}")


def _codec_attributes(codecs: Sequence[Codec]) -> list[Attribute]:
    attributes = [Attribute("rtpmap", f"{c.payload_type} {c.rtpmap}") for c in codecs]
    attributes += [Attribute("fmtp", f"{c.payload_type} {c.fmtp}") for c in codecs if c.fmtp]
    return attributes


def make_offer(
    address: str,
    port: int,
    codecs: Sequence[Codec] = DEFAULT_CODECS,
    *,
    direction: Direction = "sendrecv",
    session_id: int,
    version: int,
    ptime_ms: int = DEFAULT_PTIME_MS,
) -> SessionDescription:
    """An offer of one audio stream (RFC 3264 §5) at `address`:`port` with `codecs` in our order
    of preference. Each new offer in a dialog keeps `session_id` and takes a greater `version`
    (§8)."""
    _check_local(address, port, direction)
    if not codecs:
        raise LocalProtocolError("an offer needs at least one codec")
    if len({c.payload_type for c in codecs}) != len(codecs) or any(
        not 0 <= c.payload_type <= MAX_PAYLOAD_TYPE for c in codecs
    ):
        raise LocalProtocolError("offered codecs need distinct payload types 0-127")
    connection = Connection.for_address(address)
    attributes = _codec_attributes(codecs)
    attributes += [Attribute("ptime", str(ptime_ms)), Attribute(direction)]
    media = MediaDescription(
        "audio",
        port,
        "RTP/AVP",
        tuple(str(c.payload_type) for c in codecs),
        None,
        tuple(attributes),
    )
    return SessionDescription(
        Origin(ORIGIN_USERNAME, session_id, version, connection),
        NO_SESSION_NAME,
        connection,
        media=(media,),
    )


def _is_voice(codec: Codec) -> bool:
    return codec.name.casefold() not in _NOT_VOICE


def _find(codecs: Sequence[Codec], wanted: Codec) -> Codec | None:
    return next((c for c in codecs if c.same_format(wanted)), None)


def _events(offered: Sequence[Codec], ours: Sequence[Codec], clock_rate: int) -> Codec | None:
    """The telephone-event of `offered` that `ours` also has: preferably at the voice codec's
    clock rate (RFC 4733 §2.1), else at any rate, as peers offering opus with only
    telephone-event/8000 (baresip, Asterisk) still send their digits that way."""
    events = [c for c in offered if c.name.casefold() == TELEPHONE_EVENT and _find(ours, c)]
    candidates = [c for c in events if c.clock_rate == clock_rate] or events
    return candidates[0] if candidates else None


def _choose(
    offered: Sequence[Codec], supported: Sequence[Codec]
) -> tuple[Codec, Codec | None] | None:
    """The first voice codec of the offer that we support (its number, our fmtp), and the
    offer's telephone-event if we support it too (its number, our fmtp)."""
    for offered_codec in offered:
        ours = _find(supported, offered_codec)
        if ours is None or not _is_voice(offered_codec):
            continue
        voice = ours.with_payload_type(offered_codec.payload_type, ours.fmtp)
        events = _events(offered, supported, voice.clock_rate)
        our_events = None if events is None else _find(supported, events)
        if events is None or our_events is None:
            return voice, None
        return voice, our_events.with_payload_type(events.payload_type, our_events.fmtp)
    return None


def _rejected(offered: MediaDescription) -> MediaDescription:
    """RFC 3264 §6: a stream is declined with port 0, keeping the offer's media and formats."""
    return MediaDescription(offered.media, 0, offered.proto, offered.formats)


def answer_offer(
    offer: SessionDescription,
    address: str,
    port: int,
    supported: Sequence[Codec] = DEFAULT_CODECS,
    *,
    direction: Direction | None = None,
    session_id: int = 0,
    version: int = 0,
    rtcp_mux: bool = False,
) -> SessionDescription:
    """Answer `offer` (RFC 3264 §6): one m= line per offered one, in order; the first acceptable
    audio stream gets `address`:`port`, and a direction that mirrors the offer's (§6.1: sendonly
    -> recvonly, recvonly -> sendonly, inactive -> inactive), narrowed by `direction` when we want
    less (e.g. sendonly to hold). `session_id`/`version` fill our o= line: the caller keeps one id
    per leg and raises the version when a later answer differs (§8). Raises `NoCommonCodec`."""
    _check_local(address, port, direction)
    answered: list[MediaDescription] = []
    accepted = False
    for offered in offer.media:
        choice = None
        if (
            not accepted
            and offered.media == "audio"
            and offered.port != 0
            and offered.proto in AUDIO_PROFILES
        ):
            choice = _choose(offered.codecs, supported)
        if choice is None:
            answered.append(_rejected(offered))
            continue
        accepted = True
        voice, events = choice
        codecs = [voice] if events is None else [voice, events]
        mirrored = reverse(offer.direction_of(offered))
        chosen = mirrored if direction is None else _intersect(mirrored, direction)
        attributes = _codec_attributes(codecs)
        attributes.append(Attribute("ptime", str(offered.ptime_ms or DEFAULT_PTIME_MS)))
        if rtcp_mux and offered.rtcp_mux:
            attributes.append(Attribute("rtcp-mux"))
        attributes.append(Attribute(chosen))
        answered.append(
            MediaDescription(
                "audio",
                port,
                offered.proto,
                tuple(str(c.payload_type) for c in codecs),
                None,
                tuple(attributes),
            )
        )
    if not accepted:
        raise NoCommonCodec(_why_not(offer, supported))
    connection = Connection.for_address(address)
    return SessionDescription(
        Origin(ORIGIN_USERNAME, session_id, version, connection),
        NO_SESSION_NAME,
        connection,
        media=tuple(answered),
    )


def _why_not(offer: SessionDescription, supported: Sequence[Codec]) -> str:
    audio = [m for m in offer.media if m.media == "audio" and m.port != 0]
    if not audio:
        return "no audio stream offered"
    if not any(m.proto in AUDIO_PROFILES for m in audio):
        return f"audio offered only over {', '.join(sorted({m.proto for m in audio}))}"
    offered = sorted({c.rtpmap for m in audio for c in m.codecs if _is_voice(c)})
    ours = ", ".join(c.rtpmap for c in supported if _is_voice(c))
    return f"no common codec: offered {', '.join(offered) or 'none'}; we support {ours}"


def negotiated(
    offer: SessionDescription,
    answer: SessionDescription,
    *,
    role: Literal["offerer", "answerer"] = "offerer",
) -> Negotiated:
    """The outcome of an exchange for the side in `role` (RFC 3264 §6–§7): the first audio stream
    accepted in both, the first codec of the answer's that the offer has, and the remote side's
    address and numbers. c=0.0.0.0 (RFC 3264 §8.4) means its writer receives nothing."""
    if len(offer.media) != len(answer.media):
        raise SdpError(
            f"answer has {len(answer.media)} m= lines, offer {len(offer.media)} (RFC 3264 §6)"
        )
    for offered, answered in zip(offer.media, answer.media, strict=True):
        if offered.media != "audio" or offered.port == 0 or answered.port == 0:
            continue
        offered_codecs = offered.codecs
        voice = next(
            (c for c in answered.codecs if _is_voice(c) and _find(offered_codecs, c) is not None),
            None,
        )
        if voice is None:
            continue
        if role == "offerer":
            local_sdp, local_m, remote_sdp, remote_m = offer, offered, answer, answered
        else:
            local_sdp, local_m, remote_sdp, remote_m = answer, answered, offer, offered
        remote_codec = _find(remote_m.codecs, voice)
        if remote_codec is None:
            continue
        events = _events(remote_m.codecs, local_m.codecs, remote_codec.clock_rate)
        connection = remote_sdp.connection_of(remote_m)
        if connection is None:
            raise SdpError("accepted audio stream has no c= line (RFC 4566 §5.7)")
        local_connection = local_sdp.connection_of(local_m)
        direction = _effective(
            local_sdp.direction_of(local_m),
            local_connection is not None and local_connection.is_unspecified,
            remote_sdp.direction_of(remote_m),
            connection.is_unspecified,
        )
        mux = offered.rtcp_mux and answered.rtcp_mux
        rtcp = remote_m.rtcp
        rtcp_port = remote_m.port if mux else remote_m.port + 1  # RFC 3550 §11
        return Negotiated(
            payload_type=remote_codec.payload_type,
            codec=remote_codec,
            telephone_event_pt=None if events is None else events.payload_type,
            remote_address=connection.host,
            remote_port=remote_m.port,
            direction=direction,
            ptime_ms=remote_m.ptime_ms or DEFAULT_PTIME_MS,
            remote_rtcp_port=rtcp.port if rtcp is not None and not mux else rtcp_port,
            rtcp_mux=mux,
        )
    raise NoCommonCodec("the answer accepted no audio stream with a codec of the offer")


def _effective(
    local: Direction, local_unspecified: bool, remote: Direction, remote_unspecified: bool
) -> Direction:
    """This side sends when it says send and the remote says receive; it receives when it says
    receive and the remote says send. A side that wrote c=0.0.0.0 receives nothing (§8.4)."""
    local_send, local_recv = _SEND_RECV[local]
    remote_send, remote_recv = _SEND_RECV[remote]
    local_recv = local_recv and not local_unspecified
    remote_recv = remote_recv and not remote_unspecified
    return _DIRECTION_OF[(local_send and remote_recv, local_recv and remote_send)]


def with_direction(sdp: SessionDescription, direction: Direction) -> SessionDescription:
    """The same description as a new offer with `direction` on every accepted stream and the o=
    version raised by one (RFC 3264 §8: each new offer increments it); for hold (sendonly or
    inactive, §8.4) and resume (sendrecv). Session-level direction attributes are dropped."""
    if direction not in DIRECTIONS:
        raise LocalProtocolError(f"unknown direction {direction!r}")
    media = []
    for m in sdp.media:
        if m.port == 0:
            media.append(m)
            continue
        attributes = [a for a in m.attributes if not _is_direction(a)]
        position = next((i for i, a in enumerate(m.attributes) if _is_direction(a)), None)
        attributes.insert(len(attributes) if position is None else position, Attribute(direction))
        media.append(dataclasses.replace(m, attributes=tuple(attributes)))
    origin = dataclasses.replace(sdp.origin, session_version=sdp.origin.session_version + 1)
    return dataclasses.replace(
        sdp,
        origin=origin,
        attributes=tuple(a for a in sdp.attributes if not _is_direction(a)),
        media=tuple(media),
    )


def _is_direction(attribute: Attribute) -> bool:
    return attribute.value is None and attribute.name in DIRECTIONS


def is_hold(sdp: SessionDescription) -> bool:
    """Whether `sdp` puts the call on hold: an accepted audio stream is sendonly or inactive
    (RFC 3264 §8.4), or its address is 0.0.0.0 (RFC 2543 §B.5, still sent by old phones)."""
    for m in sdp.media:
        if m.media != "audio" or m.port == 0:
            continue
        connection = sdp.connection_of(m)
        if sdp.direction_of(m) in ("sendonly", "inactive") or (
            connection is not None and connection.is_unspecified
        ):
            return True
    return False
