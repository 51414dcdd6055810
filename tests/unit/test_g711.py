"""G.711 codecs against the Recommendation's tables (ITU-T G.711 Tables 1a and 2a).

The tables give decoder output values on the law's own scale: A-law up to 4032 (13 bits), µ-law up
to 8031 (14 bits). int16 PCM carries them left-justified: A-law × 8, µ-law × 4 (as ITU-T G.191).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callplane.core.media import g711
from callplane.core.media.g711 import (
    PCMA,
    PCMU,
    SAMPLES_PER_FRAME,
    PcmFormatError,
    alaw_decode,
    alaw_encode,
    alaw_to_ulaw,
    ulaw_decode,
    ulaw_encode,
    ulaw_to_alaw,
)

ALAW_SCALE = 8  # int16 = Table 1a value × 8
ULAW_SCALE = 4  # int16 = Table 2a value × 4
ALL_CODES = bytes(range(256))
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)

# G.711 Table 2a, µ-law: (code as sent, decoder output value) for the first, second and last
# interval of each of the eight positive segments, and a few negative codes.
ULAW_TABLE = [
    (0xFF, 0),
    (0xFE, 2),
    (0xF0, 30),
    (0xEF, 33),
    (0xEE, 37),
    (0xE0, 93),
    (0xDF, 99),
    (0xDE, 107),
    (0xD0, 219),
    (0xCF, 231),
    (0xCE, 247),
    (0xC0, 471),
    (0xBF, 495),
    (0xBE, 527),
    (0xB0, 975),
    (0xAF, 1023),
    (0xAE, 1087),
    (0xA0, 1983),
    (0x9F, 2079),
    (0x9E, 2207),
    (0x90, 3999),
    (0x8F, 4191),
    (0x8E, 4447),
    (0x80, 8031),
    (0x7F, 0),
    (0x7E, -2),
    (0x6F, -33),
    (0x0F, -4191),
    (0x00, -8031),
]

# G.711 Table 1a, A-law: (code as sent, with even bits inverted, decoder output value).
ALAW_TABLE = [
    (0xD5, 1),
    (0xD4, 3),
    (0xDA, 31),
    (0xC5, 33),
    (0xC4, 35),
    (0xCA, 63),
    (0xF5, 66),
    (0xF4, 70),
    (0xFA, 126),
    (0xE5, 132),
    (0xE4, 140),
    (0xEA, 252),
    (0x95, 264),
    (0x94, 280),
    (0x9A, 504),
    (0x85, 528),
    (0x84, 560),
    (0x8A, 1008),
    (0xB5, 1056),
    (0xB4, 1120),
    (0xBA, 2016),
    (0xA5, 2112),
    (0xA4, 2240),
    (0xAA, 4032),
    (0x55, -1),
    (0x54, -3),
    (0x45, -33),
    (0x25, -2112),
    (0x2A, -4032),
]

# Decision values (Table 2a, µ-law scale): the first input of an interval and the one below it,
# as int16 (× 4), with the decoder output value of the interval each falls in.
ULAW_DECISIONS = [
    (0, 0),
    (3, 0),
    (4 * 1, 2),
    (4 * 3 - 1, 2),
    (4 * 3, 4),
    (4 * 31 - 1, 30),
    (4 * 31, 33),
    (4 * 95 - 1, 93),
    (4 * 95, 99),
    (4 * 223 - 1, 219),
    (4 * 223, 231),
    (4 * 479 - 1, 471),
    (4 * 479, 495),
    (4 * 991 - 1, 975),
    (4 * 991, 1023),
    (4 * 2015 - 1, 1983),
    (4 * 2015, 2079),
    (4 * 4063 - 1, 3999),
    (4 * 4063, 4191),
    (4 * 7903 - 1, 7775),
    (4 * 7903, 8031),
    (32767, 8031),  # beyond the last decision value 8159: the top code (overload)
]

# Decision values (Table 1a, A-law scale), as int16 (× 8).
ALAW_DECISIONS = [
    (0, 1),
    (8 * 2 - 1, 1),
    (8 * 2, 3),
    (8 * 32 - 1, 31),
    (8 * 32, 33),
    (8 * 64 - 1, 63),
    (8 * 64, 66),
    (8 * 128 - 1, 126),
    (8 * 128, 132),
    (8 * 256 - 1, 252),
    (8 * 256, 264),
    (8 * 512 - 1, 504),
    (8 * 512, 528),
    (8 * 1024 - 1, 1008),
    (8 * 1024, 1056),
    (8 * 2048 - 1, 2016),
    (8 * 2048, 2112),
    (8 * 3968 - 1, 3904),
    (8 * 3968, 4032),
    (32767, 4032),
]


def _one(samples: list[int]) -> np.ndarray:
    return np.array(samples, dtype=np.int16)


def test_rtp_constants_match_rfc_3551() -> None:
    assert (PCMU, PCMA) == (0, 8)
    assert g711.SAMPLE_RATE_HZ == 8000
    assert g711.FRAME_MS == 20
    assert SAMPLES_PER_FRAME == 160


@pytest.mark.parametrize(("code", "value"), ULAW_TABLE)
def test_ulaw_decodes_to_the_table_2a_output_value(code: int, value: int) -> None:
    assert ulaw_decode(bytes([code])).tolist() == [value * ULAW_SCALE]


@pytest.mark.parametrize(("code", "value"), ALAW_TABLE)
def test_alaw_decodes_to_the_table_1a_output_value(code: int, value: int) -> None:
    assert alaw_decode(bytes([code])).tolist() == [value * ALAW_SCALE]


def test_full_scale_and_zero_codes() -> None:
    assert ulaw_decode(b"\x80\x00\xff\x7f").tolist() == [32124, -32124, 0, 0]
    assert alaw_decode(b"\xaa\x2a\xd5\x55").tolist() == [32256, -32256, 8, -8]


@pytest.mark.parametrize("decode", [ulaw_decode, alaw_decode])
def test_sign_bit_alone_flips_the_sign(decode: Callable[[bytes], np.ndarray]) -> None:
    values = decode(ALL_CODES).astype(np.int32)
    flipped = decode(bytes(c ^ 0x80 for c in ALL_CODES)).astype(np.int32)
    assert (flipped == -values).all()


@pytest.mark.parametrize(("sample", "value"), ULAW_DECISIONS)
def test_ulaw_encoder_follows_the_table_2a_decision_values(sample: int, value: int) -> None:
    assert ulaw_decode(ulaw_encode(_one([sample]))).tolist() == [value * ULAW_SCALE]
    # Negative samples are coded on their one's complement, as ITU-T G.191 ulaw_compress does.
    assert ulaw_decode(ulaw_encode(_one([-sample - 1]))).tolist() == [-value * ULAW_SCALE]


@pytest.mark.parametrize(("sample", "value"), ALAW_DECISIONS)
def test_alaw_encoder_follows_the_table_1a_decision_values(sample: int, value: int) -> None:
    assert alaw_decode(alaw_encode(_one([sample]))).tolist() == [value * ALAW_SCALE]
    assert alaw_decode(alaw_encode(_one([-sample - 1]))).tolist() == [-value * ALAW_SCALE]


def test_encoders_code_zero_as_positive_and_minus_one_as_negative() -> None:
    assert ulaw_encode(_one([0, -1, -32768])) == b"\xff\x7f\x00"
    assert alaw_encode(_one([0, -1, -32768])) == b"\xd5\x55\x2a"


def _ulaw_step(magnitude: np.ndarray) -> np.ndarray:
    """Quantisation step (int16) of the Table 2a segment holding each magnitude."""
    starts = ULAW_SCALE * np.array([31, 95, 223, 479, 991, 2015, 4063])
    segment = np.searchsorted(starts, magnitude, side="right")
    return ULAW_SCALE * (2 << segment)


def _alaw_step(magnitude: np.ndarray) -> np.ndarray:
    """Quantisation step (int16) of the Table 1a segment holding each magnitude."""
    starts = ALAW_SCALE * np.array([64, 128, 256, 512, 1024, 2048])
    segment = np.searchsorted(starts, magnitude, side="right")
    return ALAW_SCALE * (2 << segment)


def test_ulaw_round_trip_of_every_sample_is_within_half_a_step() -> None:
    error = np.abs(ulaw_decode(ulaw_encode(ALL_SAMPLES)).astype(np.int32) - ALL_SAMPLES)
    magnitude = np.abs(ALL_SAMPLES.astype(np.int32))
    step = _ulaw_step(magnitude)
    in_range = magnitude < ULAW_SCALE * 8159  # past the last decision value the top code holds
    assert (error[in_range] <= step[in_range] // 2).all()
    assert (error[~in_range] <= step[~in_range]).all()


def test_alaw_round_trip_of_every_sample_is_within_half_a_step() -> None:
    error = np.abs(alaw_decode(alaw_encode(ALL_SAMPLES)).astype(np.int32) - ALL_SAMPLES)
    step = _alaw_step(np.abs(ALL_SAMPLES.astype(np.int32)))
    assert (error <= step // 2).all()


def test_encoders_are_monotonic_over_every_sample() -> None:
    for encode, decode in [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]:
        levels = decode(encode(ALL_SAMPLES)).astype(np.int32)
        assert (np.diff(levels) >= 0).all()


def test_every_alaw_code_survives_decode_then_encode() -> None:
    assert alaw_encode(alaw_decode(ALL_CODES)) == ALL_CODES


def test_every_ulaw_code_but_negative_zero_survives_decode_then_encode() -> None:
    expected = bytearray(ALL_CODES)
    expected[0x7F] = 0xFF  # -0 and +0 both decode to 0, which encodes as +0
    assert ulaw_encode(ulaw_decode(ALL_CODES)) == bytes(expected)


def test_transcoding_tables_agree_with_decode_then_encode() -> None:
    assert ulaw_to_alaw(ALL_CODES) == alaw_encode(ulaw_decode(ALL_CODES))
    assert alaw_to_ulaw(ALL_CODES) == ulaw_encode(alaw_decode(ALL_CODES))


def test_transcoded_levels_stay_within_one_step_of_the_source() -> None:
    source = ulaw_decode(ALL_CODES).astype(np.int32)
    via_alaw = alaw_decode(ulaw_to_alaw(ALL_CODES)).astype(np.int32)
    assert (np.abs(via_alaw - source) <= _alaw_step(np.abs(source))).all()
    source = alaw_decode(ALL_CODES).astype(np.int32)
    via_ulaw = ulaw_decode(alaw_to_ulaw(ALL_CODES)).astype(np.int32)
    assert (np.abs(via_ulaw - source) <= _ulaw_step(np.abs(source))).all()


@given(st.binary(max_size=400))
def test_transcoding_any_payload_keeps_its_length_and_maps_each_byte(data: bytes) -> None:
    assert ulaw_to_alaw(data) == bytes(ulaw_to_alaw(bytes([b]))[0] for b in data)
    assert alaw_to_ulaw(data) == bytes(alaw_to_ulaw(bytes([b]))[0] for b in data)


@given(st.lists(st.integers(-32768, 32767), max_size=SAMPLES_PER_FRAME * 2))
def test_a_frame_of_samples_gives_one_byte_per_sample(samples: list[int]) -> None:
    pcm = _one(samples)
    ulaw, alaw = ulaw_encode(pcm), alaw_encode(pcm)
    assert len(ulaw) == len(alaw) == len(samples)
    assert ulaw_encode(ulaw_decode(ulaw)) == ulaw.replace(b"\x7f", b"\xff")
    assert alaw_encode(alaw_decode(alaw)) == alaw


def test_decoded_frames_are_writable_int16_arrays() -> None:
    pcm = ulaw_decode(b"\xff" * SAMPLES_PER_FRAME)
    assert pcm.dtype == np.int16 and pcm.shape == (SAMPLES_PER_FRAME,)
    pcm[0] = 1
    assert alaw_decode(b"\xd5" * SAMPLES_PER_FRAME)[0] == 8


@pytest.mark.parametrize(
    "pcm",
    [
        np.zeros(160, dtype=np.float32),
        np.zeros(160, dtype=np.int32),
        np.zeros((2, 80), dtype=np.int16),
        [0, 1, 2],
    ],
)
def test_encoders_reject_anything_but_1d_int16(pcm: object) -> None:
    with pytest.raises(PcmFormatError, match="1-D int16"):
        ulaw_encode(pcm)  # type: ignore[arg-type]
    with pytest.raises(PcmFormatError, match="1-D int16"):
        alaw_encode(pcm)  # type: ignore[arg-type]
