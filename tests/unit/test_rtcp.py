"""RTCP packets (RFC 3550 §6) and reception statistics (§6.4.1, A.3, A.8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callplane.core.media.rtcp import (
    Bye,
    ReceiverReport,
    ReceptionStats,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    build_compound,
    ntp_middle,
    ntp_timestamp,
    parse_compound,
    parse_packet,
)
from callplane.core.media.rtp import SequenceVerdict

FIXTURES = Path(__file__).parent / "fixtures" / "rtp"

u32 = st.integers(0, 0xFFFFFFFF)
words = st.binary(max_size=24).map(lambda b: b[: len(b) - len(b) % 4])

blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    cumulative_lost=st.integers(-0x800000, 0x7FFFFF),
    highest_sequence=u32,
    jitter=u32,
    last_sr=u32,
    delay_since_last_sr=u32,
)
report_lists = st.lists(blocks, max_size=31).map(tuple)
sdes_items = st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=255)), max_size=4).map(
    tuple
)
rtcp_packets: st.SearchStrategy[RtcpPacket] = st.one_of(
    st.builds(
        SenderReport,
        ssrc=u32,
        ntp_timestamp=st.integers(0, (1 << 64) - 1),
        rtp_timestamp=u32,
        packet_count=u32,
        octet_count=u32,
        reports=report_lists,
        extension=words,
    ),
    st.builds(ReceiverReport, ssrc=u32, reports=report_lists, extension=words),
    st.builds(
        SourceDescription,
        chunks=st.lists(st.builds(SdesChunk, ssrc=u32, items=sdes_items), max_size=5).map(tuple),
    ),
    st.builds(
        Bye,
        sources=st.lists(u32, max_size=31).map(tuple),
        reason=st.none() | st.text(max_size=60),
    ),
    st.builds(
        UnknownRtcp,
        packet_type=st.sampled_from([204, 205, 206, 207]),
        count=st.integers(0, 31),
        body=words,
    ),
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@given(rtcp_packets)
def test_parse_of_bytes_gives_back_the_packet(packet: RtcpPacket) -> None:
    data = bytes(packet)
    assert len(data) % 4 == 0
    assert parse_packet(data) == packet
    assert type(packet).parse(data) == packet


@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_compound_packet_round_trips(packets: list[RtcpPacket]) -> None:
    assert parse_compound(build_compound(packets)) == tuple(packets)


def assert_only_rtcp_error(data: bytes) -> None:
    try:
        packets = parse_compound(data)
    except RtcpError:
        return
    assert parse_compound(build_compound(packets)) == packets


@given(st.binary(max_size=120))
def test_random_bytes_raise_only_rtcp_error(data: bytes) -> None:
    assert_only_rtcp_error(data)


@given(
    st.sampled_from(["rtcp_sr_sdes.bin", "rtcp_rr_bye.bin"]),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    st.integers(0, 80),
)
def test_mutated_fixtures_raise_only_rtcp_error(
    name: str, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(fixture(name))
    for position, value in flips:
        data[position % len(data)] = value
    assert_only_rtcp_error(bytes(data[: len(data) - cut % len(data)]))


def test_sender_report_fixture_decodes_every_field() -> None:
    data = fixture("rtcp_sr_sdes.bin")
    sender, description = parse_compound(data)
    assert sender == SenderReport(
        ssrc=0x11223344,
        ntp_timestamp=0xE1B2C3D480000000,
        rtp_timestamp=0xA0000,
        packet_count=100,
        octet_count=16_000,
        reports=(
            ReportBlock(
                ssrc=0x55667788,
                fraction_lost=0x19,
                cumulative_lost=-2,
                highest_sequence=0x10005,
                jitter=12,
                last_sr=0xB2C3D480,
                delay_since_last_sr=0x20000,
            ),
        ),
    )
    assert isinstance(description, SourceDescription)
    assert description.chunks[0].cname == "cp@example"
    assert build_compound([sender, description]) == data


def test_receiver_report_and_bye_fixture_decode() -> None:
    data = fixture("rtcp_rr_bye.bin")
    assert parse_compound(data) == (ReceiverReport(0x11223344), Bye((0x11223344,), "bye"))
    assert build_compound(parse_compound(data)) == data


def test_truncated_fixture_is_rejected() -> None:
    with pytest.raises(RtcpError, match="truncated"):
        parse_compound(fixture("rtcp_truncated.bin"))


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        (b"", "empty"),
        (bytes.fromhex("40c90001 11223344"), "version 1"),
        (bytes.fromhex("81c90001 11223344"), "report blocks overrun"),
        (bytes.fromhex("80c8 0001 11223344"), "SR truncated"),
        (bytes.fromhex("81ca0002 11223344 01050000"), "overruns"),
        (bytes.fromhex("81ca0001 11223344"), "no terminating null"),
        (bytes.fromhex("82cb0001 11223344"), "BYE truncated"),
        (bytes.fromhex("81cb0002 11223344 08627965"), "reason of 8 bytes"),
        (bytes.fromhex("a0c90001 11223300"), "bad padding"),
    ],
)
def test_malformed_rtcp_is_rejected_naming_the_fault(data: bytes, fault: str) -> None:
    with pytest.raises(RtcpError, match=fault):
        parse_compound(data)


def test_single_packet_parse_refuses_a_length_mismatch() -> None:
    with pytest.raises(RtcpError, match="length field"):
        ReceiverReport.parse(bytes.fromhex("80c90001 11223344 00000000"))


def test_padded_packet_is_accepted_without_its_padding() -> None:
    padded = bytes.fromhex("a0c90002 11223344 00000004")
    assert parse_compound(padded) == (ReceiverReport(0x11223344),)


def test_sdes_with_cname_is_what_a_compound_packet_carries() -> None:
    description = SourceDescription.with_cname(0x1234, "agent-7@callplane")
    assert parse_packet(bytes(description)) == description
    assert description.chunks[0].cname == "agent-7@callplane"


def test_ntp_timestamp_and_lsr_of_a_known_instant() -> None:
    # 1970-01-01T00:00:00.5Z is 2 208 988 800.5 s after the NTP epoch
    ntp = ntp_timestamp(0.5)
    assert ntp == (2_208_988_800 << 32) | 0x80000000
    assert ntp_middle(ntp) == ((2_208_988_800 & 0xFFFF) << 16) | 0x8000


# Reception statistics


def test_jitter_follows_the_rfc_formula_on_a_known_arrival_pattern() -> None:
    stats = ReceptionStats(ssrc=1, min_sequential=1)
    # 20 ms G.711 packets (160 timestamp units); transits 0, 10, 0, 30, 30 (arrival - timestamp)
    arrivals = [(0, 0), (160, 170), (320, 320), (480, 510), (640, 670)]
    for sequence, (timestamp, arrival) in enumerate(arrivals):
        stats.record(sequence, timestamp, arrival)
    # §6.4.1: J += (|D| - J) / 16 with |D| = 10, 10, 30, 0
    expected = 0.0
    for difference in (10, 10, 30, 0):
        expected += (difference - expected) / 16
    assert stats.jitter == pytest.approx(expected)
    assert stats.jitter == pytest.approx(2.822113037109375)
    assert stats.report_block(now_s=0).jitter == 2


def test_constant_delay_gives_zero_jitter() -> None:
    stats = ReceptionStats(ssrc=1, min_sequential=1)
    for sequence in range(50):
        stats.record(sequence, 160 * sequence, 160 * sequence + 400)
    assert stats.report_block(now_s=0).jitter == 0


def test_report_block_gives_fraction_and_cumulative_loss_per_interval() -> None:
    stats = ReceptionStats(ssrc=0xBEEF, min_sequential=1)
    for sequence in [65530, 65531, 65532, 65534, 65535, 0, 3]:  # 65533, 1 and 2 lost
        stats.record(sequence, 0, 0)
    first = stats.report_block(now_s=10)
    assert first.ssrc == 0xBEEF
    assert first.cumulative_lost == 3
    assert first.fraction_lost == 3 * 256 // 10
    assert first.highest_sequence == 65536 + 3
    for sequence in range(4, 14):  # ten more, none lost
        stats.record(sequence, 0, 0)
    second = stats.report_block(now_s=15)
    assert second.fraction_lost == 0
    assert second.cumulative_lost == 3
    assert second.highest_sequence == 65536 + 13


def test_duplicates_make_fraction_zero_and_cumulative_loss_negative() -> None:
    stats = ReceptionStats(ssrc=1, min_sequential=1)
    for sequence in [1, 2, 2, 3, 3]:
        stats.record(sequence, 0, 0)
    block = stats.report_block(now_s=0)
    assert block.fraction_lost == 0
    assert block.cumulative_lost == -2


def test_lsr_and_dlsr_come_from_the_last_sender_report() -> None:
    stats = ReceptionStats(ssrc=1, min_sequential=1)
    assert stats.report_block(now_s=1).last_sr == 0
    report = SenderReport(1, ntp_timestamp(100.0), 0, 0, 0)
    stats.note_sender_report(report, arrival_s=50.0)
    block = stats.report_block(now_s=51.5)
    assert block.last_sr == ntp_middle(report.ntp_timestamp)
    assert block.delay_since_last_sr == 98_304  # 1.5 s in 1/65536 s


def test_probation_packets_do_not_count() -> None:
    stats = ReceptionStats(ssrc=1)
    assert stats.record(7, 0, 0) is SequenceVerdict.PROBATION
    assert stats.record(8, 160, 160) is SequenceVerdict.ACCEPTED
    block = stats.report_block(now_s=0)
    assert block.highest_sequence == 8
    assert block.cumulative_lost == 0
