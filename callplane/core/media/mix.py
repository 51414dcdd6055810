"""Mixing of int16 PCM frames for conferences, whisper and barge, without wrap-around.

Frames are summed in int32, so no intermediate sum overflows, and the result is brought back into
int16 by a soft limiter: samples up to `LIMITER_KNEE` pass unchanged; above it the magnitude bends
smoothly (tanh, slope 1 at the knee) toward full scale and never crosses it. A sum never wraps to
the opposite sign, and loud overlaps are compressed rather than squared off as a hard clamp would.
The limiter is memoryless, so frames can be mixed one at a time with no state between them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]

FULL_SCALE: Final = 32767  # int16 maximum; the limiter keeps |sample| ≤ this on both signs
LIMITER_KNEE: Final = 24576  # 3/4 of full scale (-2.5 dBFS): speech through G.711 rarely peaks
# above it, so a single talker passes untouched; only overlapping loud talkers are compressed
_HEADROOM: Final = FULL_SCALE - LIMITER_KNEE


class MixError(ValueError):
    """Frames that cannot be mixed: not 1-D int16, of different lengths, or none at all."""


def _checked(frames: Sequence[Int16Array]) -> None:
    lengths = set()
    for index, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.ndim != 1:
            dtype = getattr(frame, "dtype", type(frame).__name__)
            raise MixError(f"frame {index}: expected a 1-D int16 array, got {dtype}")
        lengths.add(frame.shape[0])
    if len(lengths) > 1:
        raise MixError(f"frames differ in length: {sorted(lengths)} samples")


def _limit(total: npt.NDArray[np.int32]) -> Int16Array:
    """Bring int32 sums into int16 through the soft knee, keeping each sample's sign."""
    magnitude = np.abs(total)
    if int(magnitude.max(initial=0)) <= LIMITER_KNEE:
        return total.astype(np.int16)
    over = np.maximum(magnitude - LIMITER_KNEE, 0) / _HEADROOM
    bent = LIMITER_KNEE + _HEADROOM * np.tanh(over)
    limited: npt.NDArray[np.float64] = np.where(
        magnitude > LIMITER_KNEE, np.sign(total) * np.rint(bent), total
    )
    return limited.astype(np.int16)


def mix(frames: Sequence[Int16Array]) -> Int16Array:
    """The sum of all frames, soft-limited into int16 (what a listener-only party hears)."""
    if not frames:
        raise MixError("no frames to mix: the frame length is unknown")
    _checked(frames)
    return _limit(np.sum(np.stack(frames).astype(np.int32), axis=0))


def mix_all_but_self(frames: Sequence[Int16Array]) -> list[Int16Array]:
    """For each participant, the sum of every other participant's frame, soft-limited into int16.

    The full sum is taken once in int32 and each participant's own frame subtracted before
    limiting, so the cost grows linearly with the number of legs and no one hears themselves.
    """
    if not frames:
        return []
    _checked(frames)
    stacked = np.stack(frames).astype(np.int32)
    total = np.sum(stacked, axis=0)
    return [_limit(total - own) for own in stacked]


def scale(frame: Int16Array, gain_db: float) -> Int16Array:
    """The frame multiplied by `gain_db` decibels (20·log10 of the amplitude ratio).

    Rounded to the nearest integer and clamped to int16, so 0 dB is the identity and a gain that
    pushes a sample past full scale holds it there instead of wrapping; `-inf` gives silence.
    """
    _checked([frame])
    if math.isnan(gain_db) or gain_db == math.inf:
        raise MixError(f"gain must be a finite number of decibels or -inf, got {gain_db}")
    if gain_db == 0:
        return frame.copy()
    gained = np.rint(frame.astype(np.float64) * 10.0 ** (gain_db / 20.0))
    clamped: npt.NDArray[np.float64] = np.clip(gained, -FULL_SCALE - 1, FULL_SCALE)
    return clamped.astype(np.int16)
