"""RTP packets (RFC 3550 §5.1), sequence tracking (A.1), continuity across SSRC changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callplane.core.media.rtp import (
    MAX_DROPOUT,
    RtpError,
    RtpPacket,
    SequenceTracker,
    SequenceVerdict,
    StreamMapper,
    parse,
    peek_header,
    rewrite_header,
)

FIXTURES = Path(__file__).parent / "fixtures" / "rtp"

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=u16,
    timestamp=u32,
    ssrc=u32,
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(u32, max_size=15).map(tuple),
    extension=st.none()
    | st.tuples(u16, st.binary(max_size=40).map(lambda b: b[: len(b) - len(b) % 4])),
    padding=st.integers(0, 255),
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@given(packets)
def test_parse_of_bytes_gives_back_the_packet(packet: RtpPacket) -> None:
    assert parse(bytes(packet)) == packet


@given(packets)
def test_peek_header_agrees_with_the_full_parse(packet: RtpPacket) -> None:
    data = bytes(packet)
    expected = (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc)
    assert peek_header(data) == expected
    assert peek_header(bytearray(data)) == expected
    assert peek_header(memoryview(data)) == expected


@given(st.binary(max_size=80))
def test_random_bytes_raise_only_rtp_error(data: bytes) -> None:
    try:
        packet = parse(data)
    except RtpError:
        return
    assert bytes(packet)[:12] == data[:12]


@given(
    st.sampled_from(["valid_pcmu.bin", "valid_csrc_extension_padding.bin"]),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    st.integers(0, 40),
)
def test_mutated_fixtures_raise_only_rtp_error(
    name: str, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(fixture(name))
    for position, value in flips:
        data[position % len(data)] = value
    data = data[: len(data) - cut]
    try:
        packet = parse(data)
    except RtpError:
        return
    assert parse(bytes(packet)) == packet


def test_valid_pcmu_fixture_decodes_to_its_fields() -> None:
    data = fixture("valid_pcmu.bin")
    packet = parse(data)
    assert packet == RtpPacket(0, 0x1234, 0x10000, 0xDEADBEEF, b"\xff" * 160)
    assert bytes(packet) == data


def test_fixture_with_csrcs_extension_and_padding_round_trips() -> None:
    data = fixture("valid_csrc_extension_padding.bin")
    packet = parse(data)
    assert packet.marker
    assert packet.payload_type == 101
    assert packet.sequence == 0xFFFF
    assert packet.timestamp == 0xFFFFFFFF
    assert packet.csrcs == (2, 3)
    assert packet.extension == (0xBEDE, bytes.fromhex("10aabbcc"))
    assert packet.payload == bytes.fromhex("0b8a0320")
    assert packet.padding == 4
    assert bytes(packet) == data


@pytest.mark.parametrize(
    ("name", "fault"),
    [
        ("invalid_version1.bin", "version 1"),
        ("invalid_padding_zero.bin", "bad padding"),
        ("invalid_padding_overrun.bin", "bad padding"),
        ("invalid_csrc_overrun.bin", "CSRC overrun"),
        ("invalid_extension_overrun.bin", "extension overrun"),
        ("truncated_header.bin", "truncated"),
        ("truncated_extension_header.bin", "extension overrun"),
    ],
)
def test_bad_fixture_is_rejected_naming_the_fault(name: str, fault: str) -> None:
    with pytest.raises(RtpError, match=fault):
        parse(fixture(name))


def test_peek_header_refuses_what_is_not_rtp_version_2() -> None:
    assert peek_header(fixture("invalid_version1.bin")) is None
    assert peek_header(fixture("truncated_header.bin")) is None


def test_peek_header_strips_the_marker_bit() -> None:
    assert peek_header(fixture("valid_csrc_extension_padding.bin")) == (101, 0xFFFF, 0xFFFFFFFF, 1)


@pytest.mark.parametrize(
    "fields",
    [
        {"payload_type": 128},
        {"sequence": 65536},
        {"timestamp": -1},
        {"ssrc": 1 << 32},
        {"padding": 256},
        {"csrcs": tuple(range(16))},
        {"extension": (0, b"abc")},
    ],
)
def test_building_a_packet_with_a_field_out_of_range_is_refused(fields: dict[str, object]) -> None:
    arguments: dict[str, object] = {
        "payload_type": 0,
        "sequence": 0,
        "timestamp": 0,
        "ssrc": 0,
        "payload": b"",
    }
    arguments.update(fields)
    with pytest.raises(RtpError):
        RtpPacket(**arguments)  # type: ignore[arg-type]


def test_rewrite_header_changes_only_sequence_timestamp_ssrc_and_marker() -> None:
    original = parse(fixture("valid_csrc_extension_padding.bin"))
    data = bytearray(bytes(original))
    rewrite_header(data, 7, 8000, 0xCAFEBABE, marker=False)
    rewritten = parse(data)
    assert (rewritten.sequence, rewritten.timestamp, rewritten.ssrc) == (7, 8000, 0xCAFEBABE)
    assert not rewritten.marker
    assert rewritten.payload == original.payload
    assert rewritten.csrcs == original.csrcs
    assert rewritten.extension == original.extension


def test_rewrite_header_wraps_values_and_keeps_the_marker_unless_told() -> None:
    data = bytearray(fixture("valid_pcmu.bin"))
    rewrite_header(memoryview(data), 65536 + 5, (1 << 32) + 9, 3)
    assert peek_header(data) == (0, 5, 9, 3)
    assert not parse(data).marker
    rewrite_header(data, 6, 10, 3, marker=True)
    assert parse(data).marker


def test_rewrite_header_refuses_a_truncated_datagram() -> None:
    with pytest.raises(RtpError, match="truncated"):
        rewrite_header(bytearray(fixture("truncated_header.bin")), 1, 1, 1)


# RFC 3550 Appendix A.1


def accepted(tracker: SequenceTracker, sequences: list[int]) -> list[SequenceVerdict]:
    return [tracker.update(sequence) for sequence in sequences]


def test_new_source_is_valid_after_two_packets_in_order() -> None:
    tracker = SequenceTracker()
    assert accepted(tracker, [100, 101, 102]) == [
        SequenceVerdict.PROBATION,
        SequenceVerdict.ACCEPTED,
        SequenceVerdict.ACCEPTED,
    ]
    assert tracker.base_seq == 101
    assert tracker.received == 2
    assert tracker.lost == 0


def test_min_sequential_one_accepts_the_first_packet() -> None:
    tracker = SequenceTracker(min_sequential=1)
    assert tracker.update(500) is SequenceVerdict.ACCEPTED
    assert tracker.extended_max == 500


def test_extended_sequence_counts_cycles_across_the_wrap() -> None:
    tracker = SequenceTracker(min_sequential=1)
    sequences = [(65530 + i) % 65536 for i in range(12)]
    assert set(accepted(tracker, sequences)) == {SequenceVerdict.ACCEPTED}
    assert tracker.cycles == 65536
    assert tracker.extended_max == 65536 + 5
    assert tracker.last_extended == 65541
    assert tracker.expected == 12
    assert tracker.lost == 0


def test_late_packet_from_before_the_wrap_gets_its_old_cycle() -> None:
    tracker = SequenceTracker(min_sequential=1)
    accepted(tracker, [65533, 65534, 0, 1])
    assert tracker.update(65535) is SequenceVerdict.LATE
    assert tracker.last_extended == 65535
    assert tracker.extended_max == 65537
    assert tracker.lost == 0


def test_loss_is_expected_minus_received() -> None:
    tracker = SequenceTracker(min_sequential=1)
    accepted(tracker, [10, 11, 14, 15])
    assert tracker.expected == 6
    assert tracker.lost == 2


def test_duplicates_are_recognised_and_counted_as_received() -> None:
    tracker = SequenceTracker(min_sequential=1)
    accepted(tracker, [1, 2, 3])
    assert tracker.update(3) is SequenceVerdict.DUPLICATE
    assert tracker.update(2) is SequenceVerdict.DUPLICATE
    assert tracker.duplicates == 2
    assert tracker.received == 5
    assert tracker.lost == -2  # RFC 3550 §6.4.1: duplicates can make the loss negative


def test_a_large_jump_is_a_restart_only_when_the_next_packet_follows() -> None:
    tracker = SequenceTracker(min_sequential=1)
    accepted(tracker, [1, 2, 3])
    jump = 3 + MAX_DROPOUT + 1000
    assert tracker.update(jump) is SequenceVerdict.DISCARDED
    assert tracker.update(4) is SequenceVerdict.ACCEPTED
    assert tracker.update(jump) is SequenceVerdict.DISCARDED
    assert tracker.update(jump + 1) is SequenceVerdict.RESTARTED
    assert tracker.base_seq == jump + 1
    assert tracker.received == 1


@given(st.integers(0, 0xFFFF), st.lists(st.integers(1, 5), min_size=1, max_size=300))
def test_extended_sequence_grows_with_forward_steps(first: int, steps: list[int]) -> None:
    tracker = SequenceTracker(min_sequential=1)
    tracker.update(first)
    extended = first
    for step in steps:
        extended += step
        assert tracker.update(extended % 65536) is SequenceVerdict.ACCEPTED
        assert tracker.extended_max == extended


# Stream continuity for the relay


def test_same_source_keeps_its_spacing_through_the_mapper() -> None:
    mapper = StreamMapper(ssrc=0xABCD, first_sequence=1000, first_timestamp=50_000)
    assert mapper.map(7, 40, 9_000, arrival=0) == (1000, 50_000, True)
    assert mapper.map(7, 41, 9_160, arrival=160) == (1001, 50_160, False)
    assert mapper.map(7, 43, 9_480, arrival=480) == (1003, 50_480, False)
    assert mapper.map(7, 42, 9_320, arrival=500) == (1002, 50_320, False)


def test_new_source_continues_our_stream_from_the_elapsed_frames() -> None:
    mapper = StreamMapper(ssrc=0xABCD, first_sequence=65535, first_timestamp=0xFFFFFF00)
    mapper.map(7, 40, 9_000, arrival=0)
    mapper.map(7, 41, 9_160, arrival=160)
    # after a re-INVITE the phone sends a new SSRC, 5 frames (100 ms) after its last packet
    sequence, timestamp, marker = mapper.map(99, 30_000, 123_456, arrival=160 + 5 * 160)
    assert marker
    assert sequence == 1  # 65535, 0, then 1: sequence +1 across the wrap
    assert timestamp == (0xFFFFFF00 + 160 + 5 * 160) % (1 << 32)
    assert mapper.map(99, 30_001, 123_616, arrival=1120) == (2, timestamp + 160, False)


def test_forward_rewrites_a_datagram_onto_our_ssrc() -> None:
    mapper = StreamMapper(ssrc=0xABCD, first_sequence=10, first_timestamp=1000)
    first = bytearray(bytes(RtpPacket(0, 500, 80, 1, b"\xff" * 160)))
    assert mapper.forward(first, arrival=0)
    assert parse(first) == RtpPacket(0, 10, 1000, 0xABCD, b"\xff" * 160, marker=True)
    second = bytearray(bytes(RtpPacket(0, 501, 240, 1, b"\xfe" * 160)))
    assert mapper.forward(second, arrival=160)
    assert parse(second) == RtpPacket(0, 11, 1160, 0xABCD, b"\xfe" * 160)
    assert not mapper.forward(bytearray(b"\x00" * 20), arrival=320)
