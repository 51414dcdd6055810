"""Media anchoring in the B2BUA: every SDP crossing a call points at Callplane's relay ports.

The relay is a fake here (`FakeBridge` records what the B2BUA told it); the real one is
`callplane.pbx.rtp_relay`, tested over sockets in tests/integration/test_rtp_relay.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from pbx_network import PBX_ADDRESS, Network, Phone, directory

from callplane.core.anchor import anchor
from callplane.core.sdp import parse as parse_sdp

A_PORT, B_PORT = 20_000, 20_002


def sdp(owner: str, host: str, port: int, formats: str = "0 8 101") -> bytes:
    lines = [
        "v=0",
        f"o={owner} 1 1 IN IP4 {host}",
        "s=-",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=rtpmap:18 G729/8000",
        "a=rtcp:4001",
        "a=sendrecv",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


OFFER = sdp("alice", "10.0.0.11", 4000)
ANSWER = sdp("bob", "10.0.0.12", 6000, "0 101")


@dataclass
class FakeBridge:
    a_port: int = A_PORT
    b_port: int = B_PORT
    expected_a: list[tuple[str, int]] = field(default_factory=list)
    expected_b: list[tuple[str, int]] = field(default_factory=list)
    allowed: set[int] = field(default_factory=set)
    closed: bool = False

    def expect_a(self, host: str, port: int) -> None:
        self.expected_a.append((host, port))

    def expect_b(self, host: str, port: int) -> None:
        self.expected_b.append((host, port))

    def allow(self, payload_types: tuple[int, ...]) -> None:
        self.allowed |= set(payload_types)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def bridge() -> FakeBridge:
    return FakeBridge()


@pytest.fixture
def net(bridge: FakeBridge) -> Network:
    network = Network(directory())
    network.media = lambda: bridge
    return network


def audio(body: bytes) -> tuple[str, int]:
    description = parse_sdp(body)
    media = description.media[0]
    connection = description.connection_of(media)
    assert connection is not None
    return connection.host, media.port


def test_each_leg_sees_callplane_and_the_relay_expects_each_phone(
    net: Network, bridge: FakeBridge
) -> None:
    alice, bob = Phone(net, "1001", "10.0.0.11"), Phone(net, "1002", "10.0.0.12")
    assert alice.register().status == 200 and bob.register().status == 200

    call = alice.call("1002", body=OFFER)
    ringing = bob.incoming()
    assert audio(ringing.invite.body) == (PBX_ADDRESS.host, B_PORT)
    assert b"a=rtcp" not in ringing.invite.body
    assert bridge.expected_a == [("10.0.0.11", 4000)]

    bob.answer(ringing, body=ANSWER)
    ok = alice.final(call.invite)
    assert ok is not None and ok.status == 200
    assert audio(ok.body) == (PBX_ADDRESS.host, A_PORT)
    assert bridge.expected_b == [("10.0.0.12", 6000)]
    assert {0, 8, 101} <= bridge.allowed

    dialog = alice.ack(call)
    alice.in_dialog(dialog, "BYE")
    assert bridge.closed


def test_reinvite_from_the_callee_moves_its_media_and_keeps_the_callers_port(
    net: Network, bridge: FakeBridge
) -> None:
    alice, bob = Phone(net, "1001", "10.0.0.11"), Phone(net, "1002", "10.0.0.12")
    assert alice.register().status == 200 and bob.register().status == 200
    call = alice.call("1002", body=OFFER)
    ringing = bob.incoming()
    bob_dialog = bob.answer(ringing, body=ANSWER)
    alice.ack(call)

    moved = sdp("bob", "10.0.0.99", 7000, "0 101")
    bob.in_dialog(bob_dialog, "INVITE", body=moved)

    reinvite = alice.requests("INVITE")[-1]
    assert audio(reinvite.body) == (PBX_ADDRESS.host, A_PORT)
    assert bridge.expected_b[-1] == ("10.0.0.99", 7000)


def test_offer_without_a_codec_callplane_carries_gets_488_and_rings_nobody(
    net: Network, bridge: FakeBridge
) -> None:
    alice, bob = Phone(net, "1001", "10.0.0.11"), Phone(net, "1002", "10.0.0.12")
    assert alice.register().status == 200 and bob.register().status == 200

    call = alice.call("1002", body=sdp("alice", "10.0.0.11", 4000, "18"))

    final = alice.final(call.invite)
    assert final is not None and final.status == 488
    assert not bob.requests("INVITE")
    assert bridge.closed


def test_anchor_keeps_legacy_hold_address_and_disables_other_streams() -> None:
    body = (
        b"v=0\r\no=a 1 2 IN IP4 10.0.0.11\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    )
    anchored = anchor(body, "192.0.2.1", A_PORT)
    description = parse_sdp(anchored.body)
    assert description.connection is not None and description.connection.is_unspecified
    assert [m.port for m in description.media] == [A_PORT, 0]
    assert anchored.peer is None  # on hold: nobody to expect
