"""DTMF: RFC 4733 telephone-event payloads, receiver and sender; in-band Goertzel detection."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callplane.core.media.dtmf import (
    DBM0_AMPLITUDE,
    DIGITS,
    END_REPEATS,
    HIGH_GROUP_HZ,
    KEYPAD,
    LOW_GROUP_HZ,
    MAX_DURATION,
    DtmfDetector,
    DtmfUsageError,
    EventPacket,
    GoertzelBank,
    TelephoneEvent,
    TelephoneEventParseError,
    TelephoneEventReceiver,
    TelephoneEventSender,
)

RATE = 8_000
FREQUENCIES = {
    KEYPAD[row][column]: (low, high)
    for row, low in enumerate(LOW_GROUP_HZ)
    for column, high in enumerate(HIGH_GROUP_HZ)
}

# --- RFC 4733 payload ----------------------------------------------------------------------------

events = st.builds(
    TelephoneEvent,
    event=st.integers(0, 15),
    end=st.booleans(),
    volume=st.integers(0, 63),
    duration=st.integers(0, MAX_DURATION),
)


def test_payload_layout_follows_rfc4733_section_2_3() -> None:
    event = TelephoneEvent(event=11, end=True, volume=10, duration=800)
    assert bytes(event) == b"\x0b\x8a\x03\x20"
    assert TelephoneEvent.parse(b"\x0b\x8a\x03\x20") == event
    assert event.digit == "#"


def test_reserved_bit_is_ignored_on_reception() -> None:
    assert TelephoneEvent.parse(b"\x05\x4a\x00\xa0") == TelephoneEvent(5, False, 10, 160)


@given(events)
def test_payload_bytes_round_trip(event: TelephoneEvent) -> None:
    assert TelephoneEvent.parse(bytes(event)) == event


@given(st.binary(min_size=4, max_size=4))
def test_valid_wire_bytes_round_trip(data: bytes) -> None:
    if data[0] > 15:
        return
    without_reserved_bit = bytes([data[0], data[1] & 0xBF]) + data[2:]
    assert bytes(TelephoneEvent.parse(data)) == without_reserved_bit


@given(st.binary(max_size=12))
def test_random_bytes_raise_only_the_parse_error(data: bytes) -> None:
    with contextlib.suppress(TelephoneEventParseError):
        TelephoneEvent.parse(data)


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        (b"", "0 bytes"),
        (b"\x01\x0a\x00", "3 bytes"),
        (b"\x01\x0a\x00\xa0\x00", "5 bytes"),
        (b"\x10\x0a\x00\xa0", "event 16"),
        (b"\xff\x8a\x00\xa0", "event 255"),
    ],
)
def test_bad_payload_raises_named_error(data: bytes, fault: str) -> None:
    with pytest.raises(TelephoneEventParseError, match=fault):
        TelephoneEvent.parse(data)


@pytest.mark.parametrize(
    "fields", [(16, False, 0, 0), (-1, False, 0, 0), (1, False, 64, 0), (1, False, 0, 65_536)]
)
def test_out_of_range_event_cannot_be_built(fields: tuple[int, bool, int, int]) -> None:
    with pytest.raises(DtmfUsageError):
        TelephoneEvent(*fields)


# --- RFC 4733 sender -----------------------------------------------------------------------------


def test_sender_sends_start_with_marker_updates_and_three_ends() -> None:
    packets = TelephoneEventSender().packets("5", duration_ms=160, timestamp=1234)
    assert [p.send_at_ms for p in packets] == [0, 50, 100, 150, 200, 250]
    assert [p.marker for p in packets] == [True] + [False] * 5
    assert {p.timestamp for p in packets} == {1234}
    assert [p.payload.duration for p in packets] == [400, 800, 1200, 1280, 1280, 1280]
    assert [p.payload.end for p in packets] == [False] * 3 + [True] * END_REPEATS
    assert {p.payload.digit for p in packets} == {"5"}


def test_sender_short_digit_is_three_end_packets_the_first_marked() -> None:
    packets = TelephoneEventSender(volume=6).packets("d", duration_ms=40, timestamp=0)
    assert [(p.marker, p.payload) for p in packets] == [
        (True, TelephoneEvent(15, True, 6, 320)),
        (False, TelephoneEvent(15, True, 6, 320)),
        (False, TelephoneEvent(15, True, 6, 320)),
    ]


def test_sender_uses_the_clock_rate_of_the_stream() -> None:
    packets = TelephoneEventSender(clock_rate_hz=48_000).packets("1", 100, 0)
    assert packets[-1].payload.duration == 4_800


@pytest.mark.parametrize(
    ("digit", "duration_ms", "timestamp"),
    [("E", 100, 0), ("12", 100, 0), ("1", 0, 0), ("1", 9_000, 0), ("1", 100, 1 << 32)],
)
def test_sender_refuses_misuse(digit: str, duration_ms: int, timestamp: int) -> None:
    with pytest.raises(DtmfUsageError):
        TelephoneEventSender().packets(digit, duration_ms, timestamp)


# --- RFC 4733 receiver ---------------------------------------------------------------------------


def press_packets(digits: str, start: int = 5_000, duration_ms: int = 120) -> list[EventPacket]:
    """The packets of key presses 300 ms apart, as a phone would send them."""
    sender = TelephoneEventSender()
    packets: list[EventPacket] = []
    for index, digit in enumerate(digits):
        timestamp = (start + index * 2_400) % (1 << 32)
        packets += sender.packets(digit, duration_ms, timestamp)
    return packets


def receive(packets: list[EventPacket], receiver: TelephoneEventReceiver | None = None) -> str:
    receiver = receiver or TelephoneEventReceiver()
    digits: list[str] = []
    for packet in packets:
        digits += receiver.feed(packet.timestamp, packet.marker, packet.payload)
    return "".join(digits + receiver.expire())


def test_receiver_returns_each_digit_once_despite_repeated_ends() -> None:
    receiver = TelephoneEventReceiver()
    returned = [
        receiver.feed(p.timestamp, p.marker, p.payload) for p in press_packets("1234567890*#ABCD")
    ]
    assert "".join(d for digits in returned for d in digits) == DIGITS[1:10] + "0*#ABCD"
    assert receiver.in_progress is None


def test_receiver_returns_digit_at_its_first_end_packet() -> None:
    receiver = TelephoneEventReceiver()
    start, update, end1, end2, end3 = TelephoneEventSender().packets("7", 110, 100)
    assert receiver.feed(start.timestamp, start.marker, start.payload) == []
    assert receiver.in_progress == "7"
    assert receiver.feed(update.timestamp, update.marker, update.payload) == []
    assert receiver.feed(end1.timestamp, end1.marker, end1.payload) == ["7"]
    assert receiver.feed(end2.timestamp, end2.marker, end2.payload) == []
    assert receiver.feed(end3.timestamp, end3.marker, end3.payload) == []


def test_receiver_survives_lost_start_packets() -> None:
    packets = [p for p in press_packets("1231") if not p.marker]
    assert receive(packets) == "1231"


def test_receiver_lost_end_is_ended_by_the_next_press_even_of_the_same_key() -> None:
    packets = [p for p in press_packets("5559") if not p.payload.end]
    receiver = TelephoneEventReceiver()
    digits = [d for p in packets for d in receiver.feed(p.timestamp, p.marker, p.payload)]
    assert digits == ["5", "5", "5"]
    assert receiver.expire() == ["9"]
    assert receiver.expire() == []


def test_receiver_lost_end_and_lost_start_of_same_key_still_two_presses() -> None:
    first, second = press_packets("44")[:3], press_packets("44")[6:]
    packets = [p for p in first if not p.payload.end] + [p for p in second if not p.marker]
    assert receive(packets) == "44"


def test_receiver_ignores_late_packets_of_an_earlier_press() -> None:
    packets = press_packets("12")
    reordered = packets[:2] + packets[6:8] + packets[2:6] + packets[8:]
    assert receive(reordered) == "12"


def test_receiver_crosses_timestamp_wrap() -> None:
    packets = press_packets("1#9", start=(1 << 32) - 3_000)
    assert packets[-1].timestamp < packets[0].timestamp
    assert receive(packets) == "1#9"


def test_receiver_joins_segments_of_a_long_event() -> None:
    receiver = TelephoneEventReceiver()
    assert receiver.feed(10, True, TelephoneEvent(0, False, 10, 400)) == []
    assert receiver.feed(10, False, TelephoneEvent(0, False, 10, MAX_DURATION)) == []
    next_segment = 10 + MAX_DURATION
    assert receiver.feed(next_segment, False, TelephoneEvent(0, False, 10, 400)) == []
    assert receiver.feed(next_segment, False, TelephoneEvent(0, True, 10, 800)) == ["0"]


def test_receiver_refuses_timestamp_out_of_range() -> None:
    with pytest.raises(DtmfUsageError):
        TelephoneEventReceiver().feed(-1, True, TelephoneEvent(0, False, 10, 400))


@given(
    keys=st.text(alphabet=DIGITS, min_size=1, max_size=8),
    start=st.integers(0, (1 << 32) - 1),
    fates=st.lists(st.sampled_from(["keep", "drop", "twice"]), min_size=64, max_size=64),
    keep_one=st.lists(st.integers(0, 7), min_size=8, max_size=8),
)
def test_sender_to_receiver_round_trip_with_loss_and_duplicates(
    keys: str, start: int, fates: list[str], keep_one: list[int]
) -> None:
    sender = TelephoneEventSender()
    delivered: list[EventPacket] = []
    for index, key in enumerate(keys):
        timestamp = (start + index * 2_400) % (1 << 32)
        packets = sender.packets(key, 200, timestamp)
        survivor = keep_one[index] % len(packets)
        for number, packet in enumerate(packets):
            fate = fates[(index * 8 + number) % len(fates)]
            if fate == "drop" and number != survivor:
                continue
            delivered += [packet] * (2 if fate == "twice" else 1)
    assert receive(delivered) == keys


# --- In-band detection ---------------------------------------------------------------------------


def tone_pair(
    low_hz: float,
    high_hz: float,
    duration_ms: float,
    low_dbm0: float = -7.0,
    high_dbm0: float = -5.0,
    harmonic_db: float | None = None,
) -> np.ndarray:
    """A DTMF burst as a phone sends it (high group 2 dB above low), as float samples."""
    t = np.arange(round(RATE * duration_ms / 1000)) / RATE
    low = DBM0_AMPLITUDE * 10 ** (low_dbm0 / 20)
    high = DBM0_AMPLITUDE * 10 ** (high_dbm0 / 20)
    signal = low * np.sin(2 * np.pi * low_hz * t + 0.3) + high * np.sin(2 * np.pi * high_hz * t)
    if harmonic_db is not None:
        gain = 10 ** (harmonic_db / 20)
        signal += gain * low * np.sin(2 * np.pi * 2 * low_hz * t)
        signal += gain * high * np.sin(2 * np.pi * 2 * high_hz * t + 1.0)
    return signal


def silence(duration_ms: float) -> np.ndarray:
    return np.zeros(round(RATE * duration_ms / 1000))


def detect(audio: np.ndarray, frame: int = 160) -> list[str]:
    """Feed a detector as the shell does, frame by frame, in int16."""
    pcm = np.clip(np.round(audio), -32_768, 32_767).astype(np.int16)
    detector = DtmfDetector()
    digits: list[str] = []
    for start in range(0, len(pcm), frame):
        digits += detector.feed(pcm[start : start + frame])
    return digits


def test_goertzel_bank_matches_the_recurrence() -> None:
    rng = np.random.default_rng(7)
    block = rng.normal(0, 1000, 160)
    frequencies = np.array([697.0, 1336.0, 2418.0])
    bank = GoertzelBank(frequencies, 160, RATE)
    windowed = block * np.hanning(160)
    for frequency, power in zip(frequencies, bank.power(block), strict=True):
        coefficient = 2 * np.cos(2 * np.pi * frequency / RATE)
        s1 = s2 = 0.0
        for sample in windowed:
            s1, s2 = sample + coefficient * s1 - s2, s1
        assert power == pytest.approx(s1 * s1 + s2 * s2 - coefficient * s1 * s2, rel=1e-9)


@pytest.mark.parametrize("key", list(FREQUENCIES))
def test_every_key_detected_once_at_nominal_frequencies(key: str) -> None:
    low, high = FREQUENCIES[key]
    assert detect(np.concatenate([silence(30), tone_pair(low, high, 100), silence(60)])) == [key]


@pytest.mark.parametrize("deviation", [-0.015, 0.015])
@pytest.mark.parametrize("key", list(FREQUENCIES))
def test_tones_within_one_and_a_half_percent_detected(key: str, deviation: float) -> None:
    low, high = FREQUENCIES[key]
    burst = tone_pair(low * (1 + deviation), high * (1 + deviation), 80)
    assert detect(np.concatenate([silence(13), burst, silence(40)])) == [key]
    burst = tone_pair(low * (1 + deviation), high * (1 - deviation), 80)
    assert detect(np.concatenate([silence(13), burst, silence(40)])) == [key]


@pytest.mark.parametrize("deviation", [-0.035, 0.035])
@pytest.mark.parametrize("key", list(FREQUENCIES))
def test_tones_beyond_three_and_a_half_percent_rejected(key: str, deviation: float) -> None:
    low, high = FREQUENCIES[key]
    assert detect(tone_pair(low * (1 + deviation), high, 200)) == []
    assert detect(tone_pair(low, high * (1 + deviation), 200)) == []


@pytest.mark.parametrize(
    ("twist_db", "detected"),
    [(4.0, True), (0.0, True), (-8.0, True), (6.0, False), (-10.0, False), (-12.0, False)],
)
def test_twist_limits(twist_db: float, detected: bool) -> None:
    """Twist is the high group's level minus the low group's (positive: normal twist)."""
    for key in "1", "5", "D":
        low, high = FREQUENCIES[key]
        burst = tone_pair(low, high, 100, low_dbm0=-12.0, high_dbm0=-12.0 + twist_db)
        assert detect(burst) == ([key] if detected else [])


@pytest.mark.parametrize("frequency", LOW_GROUP_HZ + HIGH_GROUP_HZ)
def test_single_tone_rejected(frequency: float) -> None:
    t = np.arange(RATE // 2) / RATE
    assert detect(DBM0_AMPLITUDE * 0.4 * np.sin(2 * np.pi * frequency * t)) == []


@pytest.mark.parametrize("key", ["1", "2", "6", "9", "D"])
def test_tone_pair_with_strong_second_harmonics_rejected(key: str) -> None:
    low, high = FREQUENCIES[key]
    assert detect(tone_pair(low, high, 200, harmonic_db=-10.0)) == []
    assert detect(tone_pair(low, high, 200, harmonic_db=-6.0)) == []
    assert detect(tone_pair(low, high, 200, harmonic_db=-25.0)) == [key]


def test_noise_and_voiced_speech_rejected() -> None:
    rng = np.random.default_rng(3)
    assert detect(rng.normal(0, 6_000, RATE * 5)) == []
    t = np.arange(RATE // 4) / RATE
    for pitch_hz in np.arange(90.0, 400.0, 7.0):
        harmonics = [k for k in range(1, 40) if k * pitch_hz < 3_800]
        vowel = np.sum(
            [0.7**k * np.sin(2 * np.pi * k * pitch_hz * t + k) for k in harmonics], axis=0
        )
        assert detect(3_000 * vowel) == [], pitch_hz


@pytest.mark.parametrize("key", ["1", "5", "9", "#", "A", "D"])
def test_detected_in_white_noise_at_15_db_snr(key: str) -> None:
    rng = np.random.default_rng(ord(key))
    low, high = FREQUENCIES[key]
    for _ in range(5):
        audio = np.concatenate([silence(40), tone_pair(low, high, 100), silence(60)])
        signal_power = np.mean(tone_pair(low, high, 100) ** 2)
        noise = rng.normal(0, np.sqrt(signal_power / 10 ** (15 / 10)), len(audio))
        assert detect(audio + noise) == [key]


def test_sequence_with_gaps_detected_in_order_exactly_once() -> None:
    parts = [silence(35)]
    for key in "123#":
        parts += [tone_pair(*FREQUENCIES[key], 90), silence(70)]
    assert detect(np.concatenate(parts)) == list("123#")
    assert detect(np.concatenate(parts), frame=240) == list("123#")


def test_same_key_repeated_after_a_pause_is_two_digits() -> None:
    burst = tone_pair(*FREQUENCIES["8"], 80)
    assert detect(np.concatenate([burst, silence(60), burst])) == ["8", "8"]


def test_brief_dropout_inside_a_press_does_not_repeat_the_digit() -> None:
    burst = tone_pair(*FREQUENCIES["8"], 80)
    assert detect(np.concatenate([burst, silence(15), burst])) == ["8"]


def test_burst_shorter_than_minimum_is_ignored() -> None:
    assert (
        detect(np.concatenate([silence(20), tone_pair(*FREQUENCIES["3"], 20), silence(60)])) == []
    )


def test_weak_tones_below_the_level_floor_ignored() -> None:
    burst = tone_pair(*FREQUENCIES["0"], 100, low_dbm0=-40.0, high_dbm0=-40.0)
    assert detect(burst) == []
    burst = tone_pair(*FREQUENCIES["0"], 100, low_dbm0=-25.0, high_dbm0=-25.0)
    assert detect(burst) == ["0"]
