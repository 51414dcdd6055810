"""Media anchoring in SDP: point a description's audio at Callplane's relay port.

A B2BUA that anchors media rewrites every SDP it passes from one leg to the other: the first
audio stream gets our address and the port of the relay facing the receiving leg, and the
address the sender advertised is returned so the relay knows whom to expect. Other streams are
disabled (port 0, RFC 3264 §8.2) because only audio is relayed, and a=rtcp lines go (RFC 3605
ports of the sender would be wrong once the media is ours).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from callplane.core.sdp import Connection, MediaDescription, SessionDescription, parse


@dataclass(frozen=True, slots=True)
class Anchored:
    """The rewritten body, the peer's advertised RTP address, and the payload types offered."""

    body: bytes
    peer: tuple[str, int] | None
    payload_types: tuple[int, ...]


def audio_stream(sdp: SessionDescription) -> MediaDescription | None:
    """The first active RTP audio stream, the one Callplane relays."""
    for media in sdp.media:
        if media.media == "audio" and media.port != 0 and media.is_rtp:
            return media
    return None


def anchor(body: bytes, host: str, port: int) -> Anchored:
    """`body` with its audio on (`host`, `port`); SdpError when it does not parse."""
    sdp = parse(body)
    ours = Connection.for_address(host)
    audio = audio_stream(sdp)
    peer: tuple[str, int] | None = None
    payload_types: tuple[int, ...] = ()
    media = []
    for m in sdp.media:
        if m is audio:
            connection = sdp.connection_of(m)
            if connection is not None and not connection.is_unspecified:
                peer = (connection.host, m.port)
            payload_types = m.payload_types
            attributes = tuple(a for a in m.attributes if a.name != "rtcp")
            # A stream-level c= is replaced; one inherited from the session changes with it.
            own = ours if m.connection is not None else None
            if connection is not None and connection.is_unspecified:
                own = connection if m.connection is not None else None  # legacy hold stays
            media.append(dataclasses.replace(m, port=port, connection=own, attributes=attributes))
        elif m.port != 0:
            media.append(dataclasses.replace(m, port=0))
        else:
            media.append(m)
    session_connection = sdp.connection
    if session_connection is not None and not session_connection.is_unspecified:
        session_connection = ours
    origin = dataclasses.replace(sdp.origin, connection=ours)
    rewritten = dataclasses.replace(
        sdp, origin=origin, connection=session_connection, media=tuple(media)
    )
    return Anchored(bytes(rewritten), peer, payload_types)
