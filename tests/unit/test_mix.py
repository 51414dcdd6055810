"""Conference mixing: everyone hears the others and not themselves, loud sums never wrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from callplane.core.media.g711 import SAMPLE_RATE_HZ, SAMPLES_PER_FRAME
from callplane.core.media.mix import (
    FULL_SCALE,
    LIMITER_KNEE,
    MixError,
    mix,
    mix_all_but_self,
    scale,
)

TONES_HZ = [440, 1000, 1500]
SECOND = SAMPLE_RATE_HZ  # one second of audio: FFT bins fall on whole hertz


def _tone(freq_hz: int, amplitude: int = 8000, samples: int = SECOND) -> np.ndarray:
    t = np.arange(samples) / SAMPLE_RATE_HZ
    wave: np.ndarray = np.rint(amplitude * np.sin(2 * math.pi * freq_hz * t))
    return wave.astype(np.int16)


def _level_at(signal: np.ndarray, freq_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal.astype(np.float64)))
    return float(spectrum[freq_hz * len(signal) // SAMPLE_RATE_HZ])


def _peaks_hz(signal: np.ndarray, count: int) -> set[int]:
    spectrum = np.abs(np.fft.rfft(signal.astype(np.float64)))
    bins = np.argsort(spectrum)[-count:]
    return {int(b) * SAMPLE_RATE_HZ // len(signal) for b in bins}


def test_each_of_three_legs_hears_the_other_two_tones_and_not_its_own() -> None:
    legs = [_tone(f) for f in TONES_HZ]
    # Mixed 20 ms frame by 20 ms frame, as the conference bridge does.
    heard: list[list[np.ndarray]] = [[], [], []]
    for start in range(0, SECOND, SAMPLES_PER_FRAME):
        frames = [leg[start : start + SAMPLES_PER_FRAME] for leg in legs]
        for index, out in enumerate(mix_all_but_self(frames)):
            heard[index].append(out)
    for index, own_hz in enumerate(TONES_HZ):
        audio = np.concatenate(heard[index])
        others = [f for f in TONES_HZ if f != own_hz]
        assert _peaks_hz(audio, 2) == set(others)
        loudest_other = min(_level_at(audio, f) for f in others)
        assert _level_at(audio, own_hz) < loudest_other * 1e-3


def test_mix_of_all_legs_carries_every_tone() -> None:
    audio = mix([_tone(f) for f in TONES_HZ])
    assert _peaks_hz(audio, 3) == set(TONES_HZ)


def test_quiet_legs_are_summed_exactly() -> None:
    legs = [_tone(f, amplitude=6000, samples=SAMPLES_PER_FRAME) for f in TONES_HZ]
    exact = sum(leg.astype(np.int32) for leg in legs)
    assert np.array_equal(mix(legs), exact)
    assert np.array_equal(mix_all_but_self(legs)[0], legs[1].astype(np.int32) + legs[2])


def test_full_scale_legs_do_not_wrap_around() -> None:
    loud = np.full(SAMPLES_PER_FRAME, FULL_SCALE, dtype=np.int16)
    most_negative = np.full(SAMPLES_PER_FRAME, -FULL_SCALE - 1, dtype=np.int16)
    up = mix([loud, loud, loud])
    down = mix([most_negative, most_negative])
    assert (up > LIMITER_KNEE).all() and (up <= FULL_SCALE).all()
    assert (down < -LIMITER_KNEE).all() and (down >= -FULL_SCALE).all()
    heard = mix_all_but_self([loud, loud, most_negative, loud])
    assert (heard[2] > LIMITER_KNEE).all()  # hears three loud legs: positive, not wrapped
    assert (heard[0] > 0).all()  # hears loud + negative + loud


def test_full_scale_tones_keep_their_shape_without_sign_flips() -> None:
    a = _tone(440, amplitude=FULL_SCALE)
    b = _tone(440, amplitude=FULL_SCALE)
    out = mix([a, b]).astype(np.int32)
    exact = a.astype(np.int32) + b
    assert (np.sign(out) == np.sign(exact)).all()
    assert np.abs(out).max() <= FULL_SCALE
    assert _peaks_hz(out, 1) == {440}


def test_the_limiter_is_monotonic_over_every_two_leg_sum() -> None:
    ramp = np.arange(-32768, 32768, dtype=np.int16)
    out = mix([ramp, ramp]).astype(np.int32)
    assert (np.diff(out) >= 0).all()
    # A 6 dB overload (both legs at full scale) lands within 0.1% of full scale.
    assert -FULL_SCALE <= out[0] < -0.999 * FULL_SCALE
    assert 0.999 * FULL_SCALE < out[-1] <= FULL_SCALE
    # Smooth: two sums 2 apart never land more than 2 apart, so no step is heard at the knee.
    assert np.abs(np.diff(out)).max() <= 2


@given(
    st.integers(1, 6).flatmap(
        lambda legs: st.lists(hnp.arrays(np.int16, SAMPLES_PER_FRAME), min_size=legs, max_size=legs)
    )
)
def test_mixed_samples_keep_the_sign_of_the_true_sum_and_never_exceed_it(
    frames: list[np.ndarray],
) -> None:
    exact = np.sum([f.astype(np.int64) for f in frames], axis=0)
    out = mix(frames).astype(np.int64)
    assert (np.sign(out) == np.sign(exact)).all()
    assert (np.abs(out) <= np.abs(exact)).all()
    assert (np.abs(out) <= FULL_SCALE).all()
    quiet = np.abs(exact) <= LIMITER_KNEE
    assert np.array_equal(out[quiet], exact[quiet])
    for index, heard in enumerate(mix_all_but_self(frames)):
        others = exact - frames[index]
        assert (np.sign(heard.astype(np.int64)) == np.sign(others)).all()


def test_silence_in_silence_out() -> None:
    silence = [np.zeros(SAMPLES_PER_FRAME, dtype=np.int16) for _ in range(4)]
    assert not mix(silence).any()
    assert all(not out.any() for out in mix_all_but_self(silence))
    assert not scale(silence[0], 12.0).any()


def test_a_lone_participant_hears_silence() -> None:
    [heard] = mix_all_but_self([_tone(440, samples=SAMPLES_PER_FRAME)])
    assert heard.shape == (SAMPLES_PER_FRAME,) and not heard.any()


def test_an_empty_conference_mixes_to_no_outputs() -> None:
    assert mix_all_but_self([]) == []
    with pytest.raises(MixError, match="no frames"):
        mix([])


def test_frames_of_different_lengths_or_types_are_refused() -> None:
    frame = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
    with pytest.raises(MixError, match="differ in length"):
        mix([frame, frame[:80]])
    with pytest.raises(MixError, match="frame 1: expected a 1-D int16"):
        mix_all_but_self([frame, frame.astype(np.float32)])
    with pytest.raises(MixError, match="1-D int16"):
        scale(frame.reshape(2, 80), 0.0)


def test_outputs_are_int16_frames_of_the_input_length() -> None:
    legs = [_tone(f, samples=SAMPLES_PER_FRAME) for f in TONES_HZ]
    for out in [mix(legs), *mix_all_but_self(legs), scale(legs[0], -6.0)]:
        assert out.dtype == np.int16 and out.shape == (SAMPLES_PER_FRAME,)


def test_scale_by_zero_db_is_the_identity_and_a_copy() -> None:
    frame = _tone(1000, samples=SAMPLES_PER_FRAME)
    out = scale(frame, 0.0)
    assert np.array_equal(out, frame)
    out[0] += 1
    assert not np.array_equal(out, frame)


def test_scale_changes_amplitude_by_the_decibels_given() -> None:
    frame = _tone(1000, amplitude=4000)
    assert _level_at(scale(frame, 20 * math.log10(2)), 1000) == pytest.approx(
        2 * _level_at(frame, 1000), rel=1e-3
    )
    assert _level_at(scale(frame, -20.0), 1000) == pytest.approx(
        _level_at(frame, 1000) / 10, rel=1e-3
    )
    assert not scale(frame, -math.inf).any()


def test_scale_past_full_scale_holds_at_full_scale_without_wrapping() -> None:
    frame = _tone(440, amplitude=20000)
    out = scale(frame, 12.0).astype(np.int32)
    assert (np.sign(out) == np.sign(frame)).all()
    assert out.max() == FULL_SCALE and out.min() == -FULL_SCALE - 1


@pytest.mark.parametrize("gain_db", [math.nan, math.inf])
def test_scale_refuses_a_gain_that_is_not_a_number_of_decibels(gain_db: float) -> None:
    with pytest.raises(MixError, match="gain"):
        scale(np.zeros(SAMPLES_PER_FRAME, dtype=np.int16), gain_db)
