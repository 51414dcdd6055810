"""G.711 µ-law (PCMU) and A-law (PCMA) codecs on 16-bit linear PCM, and µ-law ↔ A-law transcoding.

ITU-T G.711 (11/1988) defines both laws on sign-magnitude values: A-law on 13 bits (Table 1a,
outputs up to ±4032), µ-law on 14 bits (Table 2a, outputs up to ±8031). Here linear PCM is int16
with those values left-justified, as the ITU-T G.191 Software Tools Library does: an A-law table
value is multiplied by 8 (0xAA decodes to +32256), a µ-law one by 4 (0x80 decodes to +32124).
Encoding truncates the bits below the law's resolution and takes the one's complement of negative
samples (G.191 `alaw_compress`/`ulaw_compress`), so -1 encodes like 0 with the sign bit cleared.

µ-law has two codes for zero: 0xFF (+0) and 0x7F (-0). Both decode to 0 and 0 encodes to 0xFF, so
`ulaw_encode(ulaw_decode(b"\\x7f")) == b"\\xff"`; every other code survives decode then encode.

Encoders index a 65,536-entry table by the sample's bit pattern, decoders a 256-entry table by the
code: no per-sample Python. Transcoding is `bytes.translate` through a 256-byte table, the cheap
path when the two legs of a bridge negotiated different laws.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

PCMU: Final = 0  # RFC 3551 §6 Table 4: static RTP payload type of G.711 µ-law
PCMA: Final = 8  # RFC 3551 §6 Table 4: static RTP payload type of G.711 A-law
SAMPLE_RATE_HZ: Final = 8000  # G.711 §1: 8000 samples per second
FRAME_MS: Final = 20  # RFC 3551 §4.5: default packetization interval (ptime) for G.711
SAMPLES_PER_FRAME: Final = SAMPLE_RATE_HZ * FRAME_MS // 1000  # 160 samples, 160 bytes per packet

_SIGN_BIT: Final = 0x80  # G.711 §2: bit 1 (the first sent) is the sign, 1 for positive
_ALAW_EVEN_BITS: Final = 0x55  # G.711 Table 1a note: A-law inverts the even bits on the line
_ULAW_ALL_BITS: Final = 0xFF  # G.711 Table 2a note: µ-law inverts all eight bits on the line
_ALAW_SHIFT: Final = 3  # int16 carries A-law's 13 bits left-justified: table value × 8
_ULAW_SHIFT: Final = 2  # int16 carries µ-law's 14 bits left-justified: table value × 4
_ULAW_BIAS: Final = 33  # G.711 Table 2a: µ-law decision values are those of a biased binary law,
# (2^(s+5) - 33) at the start of segment s; adding 33 makes segment boundaries powers of two
_ULAW_MAX_BIASED: Final = 0x1FFF  # 8159 + 33 - 1: the last magnitude of µ-law's top interval

Int16Array = npt.NDArray[np.int16]


class PcmFormatError(ValueError):
    """Linear PCM that is not a one-dimensional int16 array (a bug in the caller)."""


def _alaw_decode_table() -> Int16Array:
    """G.711 Table 1a: the decoder output value of each A-law code, left-justified in int16."""
    code = np.arange(256, dtype=np.int32) ^ _ALAW_EVEN_BITS
    segment = (code >> 4) & 0x7
    step = code & 0xF
    # Segments 0 and 1 share a step of 2 (table units); segment s ≥ 1 starts at 2^(s+4).
    first = np.where(segment == 0, 0, 16 << segment)
    width = np.where(segment == 0, 2, 1 << segment)
    magnitude = first + step * width + width // 2
    signed: npt.NDArray[np.int32] = np.where(code & _SIGN_BIT, magnitude, -magnitude)
    return (signed << _ALAW_SHIFT).astype(np.int16)


def _ulaw_decode_table() -> Int16Array:
    """G.711 Table 2a: the decoder output value of each µ-law code, left-justified in int16."""
    code = np.arange(256, dtype=np.int32) ^ _ULAW_ALL_BITS
    segment = (code >> 4) & 0x7
    step = code & 0xF
    # Segment s spans biased magnitudes [2^(s+5), 2^(s+6)) in 16 steps of 2^(s+1).
    magnitude = (32 << segment) + step * (2 << segment) + (1 << segment) - _ULAW_BIAS
    signed = np.where(code & _SIGN_BIT, -magnitude, magnitude)
    return (signed << _ULAW_SHIFT).astype(np.int16)


def _all_int16() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its bit pattern read as uint16 (the encoders' table index)."""
    return np.arange(1 << 16, dtype=np.uint16).view(np.int16).astype(np.int32)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    """G.711 Table 1a decision values: the A-law code of each int16 sample."""
    pcm = _all_int16()
    magnitude = np.where(pcm < 0, ~pcm, pcm) >> 4  # 0..2047 in steps of 2 table units
    exponent = np.maximum(_bit_length(magnitude) - 4, 0)  # segment 0 and 1 share the step size
    mantissa = np.where(exponent == 0, magnitude, magnitude >> np.maximum(exponent - 1, 0)) & 0xF
    code = (exponent << 4) | mantissa | np.where(pcm >= 0, _SIGN_BIT, 0)
    return (code ^ _ALAW_EVEN_BITS).astype(np.uint8)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    """G.711 Table 2a decision values: the µ-law code of each int16 sample."""
    pcm = _all_int16()
    magnitude = np.where(pcm < 0, ~pcm, pcm) >> _ULAW_SHIFT
    biased = np.minimum(magnitude + _ULAW_BIAS, _ULAW_MAX_BIASED)
    exponent = _bit_length(biased) - 6  # biased magnitudes of segment 0 are 32..63
    mantissa = (biased >> (exponent + 1)) & 0xF
    code: npt.NDArray[np.int32] = (exponent << 4) | mantissa | np.where(pcm >= 0, _SIGN_BIT, 0)
    return (code ^ (_ULAW_ALL_BITS ^ _SIGN_BIT)).astype(np.uint8)


def _bit_length(values: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """`int.bit_length` of each non-negative value below 2^16, vectorised."""
    thresholds = 1 << np.arange(16, dtype=np.int32)
    return np.searchsorted(thresholds, values, side="right").astype(np.int32)


_ALAW_DECODE: Final = _alaw_decode_table()
_ULAW_DECODE: Final = _ulaw_decode_table()
_ALAW_ENCODE: Final = _alaw_encode_table()
_ULAW_ENCODE: Final = _ulaw_encode_table()
# Transcoding maps each code to the code of its decoded value in the other law (decode then
# encode). The µ-to-A table printed in G.711 (Table 3, as the Sun reference g711.c reproduces it)
# picks the other neighbouring A-law level for some codes near A-law decision values; both choices
# are within one quantisation step of the µ-law value.
_ULAW_TO_ALAW: Final = _ALAW_ENCODE[_ULAW_DECODE.view(np.uint16)].tobytes()
_ALAW_TO_ULAW: Final = _ULAW_ENCODE[_ALAW_DECODE.view(np.uint16)].tobytes()


def _pattern(pcm: Int16Array) -> npt.NDArray[np.uint16]:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        shape = getattr(pcm, "shape", None)
        dtype = getattr(pcm, "dtype", type(pcm).__name__)
        raise PcmFormatError(f"expected a 1-D int16 array, got {dtype} with shape {shape}")
    return pcm.view(np.uint16)


def ulaw_encode(pcm: Int16Array) -> bytes:
    """Encode int16 linear PCM to G.711 µ-law (G.711 §3, Table 2a), one byte per sample."""
    return _ULAW_ENCODE[_pattern(pcm)].tobytes()


def ulaw_decode(data: bytes) -> Int16Array:
    """Decode G.711 µ-law bytes to int16 linear PCM (G.711 Table 2a decoder output values)."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(pcm: Int16Array) -> bytes:
    """Encode int16 linear PCM to G.711 A-law (G.711 §2, Table 1a), one byte per sample."""
    return _ALAW_ENCODE[_pattern(pcm)].tobytes()


def alaw_decode(data: bytes) -> Int16Array:
    """Decode G.711 A-law bytes to int16 linear PCM (G.711 Table 1a decoder output values)."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_to_alaw(data: bytes) -> bytes:
    """Transcode µ-law bytes to A-law bytes, as decoding then encoding would, without numpy."""
    return data.translate(_ULAW_TO_ALAW)


def alaw_to_ulaw(data: bytes) -> bytes:
    """Transcode A-law bytes to µ-law bytes, as decoding then encoding would, without numpy."""
    return data.translate(_ALAW_TO_ULAW)
