"""DTMF: RFC 4733 telephone-events (payload, receiver, sender) and in-band Goertzel detection.

Wire type: `TelephoneEvent.parse(data)` and `bytes(event)` (RFC 4733 §2.3). The receiver turns the
packets of a telephone-event stream into digits, one per key press, whatever the network lost or
repeated; the sender turns a key press into the packets to send, with their send times.

Trunks that send digits in the audio need them heard: `DtmfDetector` takes 8 kHz 16-bit PCM and
returns each key press once. Every 20 ms frame is weighed against the rules a DTMF receiver
follows (ITU-T Q.24 and common practice): one tone per group near a Q.23 frequency, levels within
the twist limits, the pair carrying nearly all the energy, clean second harmonics. A digit must
hold for 40 ms to count, and a 40 ms pause must pass before the same key counts again.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2, Table 3: events 0-15 in this order
PAYLOAD_BYTES = 4  # RFC 4733 §2.3: event (8 bits), E, R, volume (6 bits), duration (16 bits)
MAX_EVENT = len(DIGITS) - 1  # DTMF events only; others (flash, §3.2's 16) are not handled here
MAX_VOLUME = 63  # RFC 4733 §2.3.4: 6 bits, 0 to -63 dBm0
MAX_DURATION = 0xFFFF  # RFC 4733 §2.3.5: 16 bits of timestamp units
TIMESTAMP_MOD = 1 << 32  # RFC 3550 §5.1: the RTP timestamp is a 32-bit field
_HALF_TIMESTAMP = TIMESTAMP_MOD // 2  # serial-number comparison: ahead by less is "newer"
SEGMENT_SLACK = 8_000  # RFC 4733 §2.5.1.3: a long event's segments fill the 16-bit duration; one
# seen within this many units of it (1 s at 8 kHz, room for lost updates) may go on in a new
# segment, while an ordinary key press never comes near and a new timestamp is a new press

DEFAULT_INTERVAL_MS = 50  # RFC 4733 §2.5.1.2: the update interval it recommends
END_REPEATS = 3  # RFC 4733 §2.5.1.4: the final packet is sent three times
DEFAULT_VOLUME = 10  # -10 dBm0 (RFC 4733 §2.3.4 volume), a usual level for one key press
DEFAULT_CLOCK_RATE_HZ = 8_000  # the events use the clock of the audio they go with: G.711's

_PAYLOAD = struct.Struct("!BBH")
_END_BIT = 0x80
_RESERVED_BIT = 0x40
_VOLUME_MASK = 0x3F


class DtmfError(ValueError):
    """Base of every DTMF error."""


class TelephoneEventParseError(DtmfError):
    """The peer sent a telephone-event payload that is not one (RFC 4733 §2.3); `reason` says why.

    The shell ignores and counts such a packet, as it does RTP with a wrong payload type.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DtmfUsageError(DtmfError):
    """Our own code asked for something impossible (a digit not on the keypad, a bad duration)."""


def event_for_digit(digit: str) -> int:
    """The RFC 4733 event code of a keypad digit ('0'-'9', '*', '#', 'A'-'D')."""
    if len(digit) != 1 or digit.upper() not in DIGITS:
        raise DtmfUsageError(f"{digit!r} is not a DTMF digit (one of {DIGITS})")
    return DIGITS.index(digit.upper())


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 §2.3).

    `duration` is in RTP timestamp units since the event began (§2.3.5); `volume` is the power
    level in -dBm0 (§2.3.4); `end` is the E bit, set on the final packets of the event (§2.5.1.4).
    """

    event: int
    end: bool
    volume: int
    duration: int

    def __post_init__(self) -> None:
        if not 0 <= self.event <= MAX_EVENT:
            raise DtmfUsageError(f"event {self.event} out of range 0..{MAX_EVENT}")
        if not 0 <= self.volume <= MAX_VOLUME:
            raise DtmfUsageError(f"volume {self.volume} out of range 0..{MAX_VOLUME}")
        if not 0 <= self.duration <= MAX_DURATION:
            raise DtmfUsageError(f"duration {self.duration} out of range 0..{MAX_DURATION}")

    @property
    def digit(self) -> str:
        """The keypad digit this event stands for."""
        return DIGITS[self.event]

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        """Parse a 4-octet payload; the R bit is ignored on reception (RFC 4733 §2.3.3)."""
        if len(data) != PAYLOAD_BYTES:
            raise TelephoneEventParseError(
                f"telephone-event payload is {len(data)} bytes, expected {PAYLOAD_BYTES}"
            )
        event, flags, duration = _PAYLOAD.unpack(data)
        if event > MAX_EVENT:
            raise TelephoneEventParseError(f"event {event} is not a DTMF digit (0..{MAX_EVENT})")
        return cls(event, bool(flags & _END_BIT), flags & _VOLUME_MASK, duration)

    def __bytes__(self) -> bytes:
        """The 4-octet payload, R bit zero (RFC 4733 §2.3.3: "MUST be zero on transmission")."""
        flags = (_END_BIT if self.end else 0) | self.volume
        return _PAYLOAD.pack(self.event, flags, self.duration)


class TelephoneEventReceiver:
    """Digits from a telephone-event stream, one per key press (RFC 4733 §2.5.2).

    Packets of one event share its RTP timestamp (§2.5.1.1); the marker bit flags the first packet
    (§2.5.1.2); the E bit flags the last, sent three times (§2.5.1.4). A digit is returned when its
    event ends: at its first end packet, or when a newer timestamp starts another event (the end
    packets were lost), or when the shell calls `expire` because the stream went quiet. A lost
    start packet does not matter: any packet of a new timestamp starts the event. Packets older
    than the current event (reordered) and repeats of an ended event are ignored. A new timestamp
    without the marker bit for the same unfinished event, once that event's duration has nearly
    filled 16 bits, is its next segment (§2.5.1.3), not a new press. Timestamps compare modulo
    2**32, so a stream crossing the wrap loses nothing.

    The life of one event, as a table: (state, packet) -> state, output
        idle            any packet                 -> active T (ended if E), digit if E
        active T        same T, no E               -> active T
        active T        same T, E                  -> ended T, digit
        active T        newer T', next segment     -> active T' (same event, no M, ~0xFFFF)
        active T        newer T', otherwise        -> active/ended T', digit of T (+ T' if E)
        ended T         same T                     -> ended T (repeat ignored)
        ended T         newer T'                   -> active/ended T', digit if E
        active/ended T  older T'                   -> unchanged (late packet ignored)
    """

    def __init__(self) -> None:
        self._timestamp: int | None = None
        self._event = 0
        self._duration = 0
        self._ended = True

    @property
    def in_progress(self) -> str | None:
        """The digit of the event now under way, not yet returned; None when none is."""
        return None if self._ended else DIGITS[self._event]

    def feed(self, timestamp: int, marker: bool, payload: TelephoneEvent) -> list[str]:
        """One received packet's RTP timestamp, marker bit and payload; returns digits completed."""
        if not 0 <= timestamp < TIMESTAMP_MOD:
            raise DtmfUsageError(f"RTP timestamp {timestamp} out of range 0..{TIMESTAMP_MOD - 1}")
        if self._timestamp is None:
            return self._start(timestamp, payload)
        ahead = (timestamp - self._timestamp) % TIMESTAMP_MOD
        if ahead == 0:
            if self._ended or payload.event != self._event:
                return []
            self._duration = max(self._duration, payload.duration)
            return self._end() if payload.end else []
        if ahead >= _HALF_TIMESTAMP:
            return []
        if self._continues(marker, payload):
            self._timestamp = timestamp
            self._duration = payload.duration
            return self._end() if payload.end else []
        completed = [] if self._ended else [DIGITS[self._event]]
        return completed + self._start(timestamp, payload)

    def expire(self) -> list[str]:
        """The stream went quiet with an event unfinished (its end packets lost): complete it.

        The shell calls this when no telephone-event packet has come for a while (its own
        timer: RFC 4733 §2.5.2 leaves that timeout to the receiver).
        """
        return [] if self._ended else self._end()

    def _continues(self, marker: bool, payload: TelephoneEvent) -> bool:
        """Whether a packet with a newer timestamp is the next segment of the event under way."""
        return (
            not self._ended
            and not marker
            and payload.event == self._event
            and self._duration >= MAX_DURATION - SEGMENT_SLACK
        )

    def _start(self, timestamp: int, payload: TelephoneEvent) -> list[str]:
        self._timestamp = timestamp
        self._duration = payload.duration
        self._event = payload.event
        self._ended = False
        return self._end() if payload.end else []

    def _end(self) -> list[str]:
        self._ended = True
        return [DIGITS[self._event]]


@dataclass(frozen=True, slots=True)
class EventPacket:
    """A telephone-event packet to send `send_at_ms` after the key press began."""

    send_at_ms: int
    timestamp: int
    marker: bool
    payload: TelephoneEvent


class TelephoneEventSender:
    """The packets that carry one key press (RFC 4733 §2.5.1).

    The first packet has the marker bit (§2.5.1.2); updates follow every `interval_ms` with the
    duration so far; the final packet, with the E bit and the full duration, is sent
    `END_REPEATS` times, `interval_ms` apart (§2.5.1.4). All carry the timestamp of the event's
    start (§2.5.1.1). The shell sends each at its `send_at_ms` and stops the audio meanwhile.
    """

    def __init__(
        self,
        clock_rate_hz: int = DEFAULT_CLOCK_RATE_HZ,
        volume: int = DEFAULT_VOLUME,
        interval_ms: int = DEFAULT_INTERVAL_MS,
    ) -> None:
        if clock_rate_hz <= 0 or interval_ms <= 0:
            raise DtmfUsageError("clock rate and interval must be positive")
        if not 0 <= volume <= MAX_VOLUME:
            raise DtmfUsageError(f"volume {volume} out of range 0..{MAX_VOLUME}")
        self.clock_rate_hz = clock_rate_hz
        self.volume = volume
        self.interval_ms = interval_ms

    def packets(self, digit: str, duration_ms: int, timestamp: int) -> list[EventPacket]:
        """The packets for `digit` held `duration_ms`, starting at RTP timestamp `timestamp`.

        A press longer than one event's 16-bit duration (§2.5.1.3's segments, over 8 s at
        8 kHz) is refused: no keypad needs it.
        """
        event = event_for_digit(digit)
        if not 0 <= timestamp < TIMESTAMP_MOD:
            raise DtmfUsageError(f"RTP timestamp {timestamp} out of range 0..{TIMESTAMP_MOD - 1}")
        total = self._units(duration_ms)
        if duration_ms <= 0 or total > MAX_DURATION:
            raise DtmfUsageError(
                f"duration {duration_ms} ms outside 1..{MAX_DURATION} timestamp units"
            )
        packets: list[EventPacket] = []
        elapsed_ms = self.interval_ms
        while elapsed_ms < duration_ms:
            update = TelephoneEvent(event, False, self.volume, self._units(elapsed_ms))
            send_at = elapsed_ms - self.interval_ms
            packets.append(EventPacket(send_at, timestamp, not packets, update))
            elapsed_ms += self.interval_ms
        final = TelephoneEvent(event, True, self.volume, total)
        first_end_ms = elapsed_ms - self.interval_ms
        for repeat in range(END_REPEATS):
            send_at = first_end_ms + repeat * self.interval_ms
            packets.append(EventPacket(send_at, timestamp, not packets, final))
        return packets

    def _units(self, milliseconds: int) -> int:
        return milliseconds * self.clock_rate_hz // 1000


# In-band detection (ITU-T Q.23 tones, Q.24 acceptance)

SAMPLE_RATE_HZ = 8_000  # G.711 narrowband audio, what trunks carry
FRAME_MS = 20  # the usual RTP packet time; one decision per frame
LOW_GROUP_HZ = (697.0, 770.0, 852.0, 941.0)  # ITU-T Q.23: the low group (keypad rows)
HIGH_GROUP_HZ = (1209.0, 1336.0, 1477.0, 1633.0)  # ITU-T Q.23: the high group (columns)
KEYPAD = ("123A", "456B", "789C", "*0#D")  # ITU-T Q.23: rows by low tone, columns by high

MAX_FREQUENCY_DEVIATION = 0.025  # Q.24: a tone within ±1.5% of nominal must be accepted and one
# beyond ±3.5% rejected; the decision sits halfway, 1% from either side
SEARCH_SPAN = 0.04  # each tone is searched over ±4% of nominal, so a tone just outside the
# acceptance band is located (and rejected) rather than mistaken for a weaker one inside it
SEARCH_STEP = 0.0025  # filter spacing: locates a tone to ±0.125%, far finer than the 1% margin

NORMAL_TWIST_DB = 4.0  # high group louder than low: accepted up to 4 dB (Q.24, Bellcore practice)
REVERSE_TWIST_DB = 8.0  # low group louder than high, as long loops attenuate the high group:
# accepted up to 8 dB
TWIST_MARGIN_DB = 0.5  # the level estimate's own error under noise, granted to the sender

DBM0_AMPLITUDE = 32_768 * 10 ** (-3.17 / 20)  # int16 peak of a 0 dBm0 sine: a full-scale sine
# is +3.17 dBm0 in G.711 µ-law
MIN_TONE_DBM0 = -30.0  # weakest tone accepted: some 20 dB under what a phone sends, leaving
# room for line loss, while idle-line noise stays well below
MIN_TONE_ENERGY_FRACTION = 0.85  # the pair must carry 85% of the frame's energy: speech and
# noise spread theirs; a tone pair at 15 dB SNR carries 97%, at 8 dB SNR about 85%
MAX_SECOND_HARMONIC_DB = -12.0  # a DTMF generator's distortion sits about 20 dB or more under
# its tones, while voiced speech has harmonics within a few dB of its fundamental
HARMONIC_CLEARANCE_HZ = 150.0  # a low tone's second harmonic is judged only this far from the
# high tone: three filter bins at 20 ms, outside the Hann window's main lobe (±2 bins)

MIN_DIGIT_MS = 40  # Q.24: a tone pair lasting 40 ms must be recognised; shorter bursts are
# likelier speech or a click than a key press
MIN_PAUSE_MS = 40  # Q.24: a 40 ms interruption between digits must be recognised; a shorter
# drop-out inside one press (a fade, a lost packet) does not repeat the digit

FloatArray = npt.NDArray[np.float64]


class GoertzelBank:
    """The Goertzel algorithm for many frequencies at once over blocks of `size` samples.

    Goertzel's recurrence s[n] = x[n] + 2cos(w)s[n-1] - s[n-2] is linear, so its last two states
    are dot products of the block with the filter's impulse response sin(w(k+1))/sin(w), read
    backwards; one matrix product runs every filter of the bank, and the power is
    s1² + s2² - 2cos(w)s1s2 as in the recurrence. The block is Hann-windowed first, which keeps
    a strong tone from leaking into filters more than two bins away.
    """

    def __init__(self, frequencies_hz: FloatArray, size: int, sample_rate_hz: int) -> None:
        omega = 2 * np.pi * np.asarray(frequencies_hz, dtype=np.float64) / sample_rate_hz
        self.window = np.hanning(size)
        lags = np.arange(size)[::-1].astype(np.float64)  # the lag of sample n at the block's end
        response_last = np.sin(np.outer(omega, lags + 1)) / np.sin(omega)[:, None]
        response_before = np.sin(np.outer(omega, lags)) / np.sin(omega)[:, None]
        self._last = response_last * self.window
        self._before = response_before * self.window
        self._coefficient = 2 * np.cos(omega)
        self.gain = float(self.window.sum()) / 2  # |filter output| per unit of tone amplitude

    def power(self, block: FloatArray) -> FloatArray:
        """The squared magnitude of each filter's output after the block."""
        s1 = self._last @ block
        s2 = self._before @ block
        power: FloatArray = s1 * s1 + s2 * s2 - self._coefficient * s1 * s2
        return power

    def amplitude(self, block: FloatArray) -> FloatArray:
        """Each filter's estimate of the peak amplitude of a tone at its frequency."""
        amplitude: FloatArray = np.sqrt(np.maximum(self.power(block), 0.0)) / self.gain
        return amplitude


@dataclass(frozen=True, slots=True)
class _Tone:
    """The strongest tone found in one group: the nominal frequency it is nearest to."""

    index: int  # in its group
    frequency_hz: float
    deviation: float  # relative to nominal
    amplitude: float


class _GroupSearch:
    """A Goertzel filter every `SEARCH_STEP` across ±`SEARCH_SPAN` of each frequency of a group."""

    def __init__(self, nominal_hz: tuple[float, ...], size: int, sample_rate_hz: int) -> None:
        steps = round(SEARCH_SPAN / SEARCH_STEP)
        self.offsets = np.arange(-steps, steps + 1) * SEARCH_STEP
        self.nominal = np.asarray(nominal_hz)
        grid = np.outer(self.nominal, 1 + self.offsets)
        self.bank = GoertzelBank(grid.ravel(), size, sample_rate_hz)

    def strongest(self, block: FloatArray) -> _Tone:
        amplitudes = self.bank.amplitude(block)
        best = int(np.argmax(amplitudes))
        index, step = divmod(best, len(self.offsets))
        deviation = float(self.offsets[step])
        frequency = float(self.nominal[index]) * (1 + deviation)
        return _Tone(index, frequency, deviation, float(amplitudes[best]))


class DtmfDetector:
    """Key presses heard in PCM audio (ITU-T Q.24), fed frame by frame; sans-IO.

    `feed` accepts int16 samples in any count (they are cut into 20 ms frames internally) and
    returns the digits recognised, in order. A digit is returned once, as soon as it has held for
    `MIN_DIGIT_MS`; the same or another key is returned again only after a pause of
    `MIN_PAUSE_MS`, or when another valid key holds for `MIN_DIGIT_MS` in its place.
    """

    def __init__(self, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
        if sample_rate_hz < 2 * 2 * max(HIGH_GROUP_HZ) * (1 + SEARCH_SPAN):
            raise DtmfUsageError(f"{sample_rate_hz} Hz cannot carry the high group's harmonics")
        self.sample_rate_hz = sample_rate_hz
        self.frame_size = sample_rate_hz * FRAME_MS // 1000
        self._low = _GroupSearch(LOW_GROUP_HZ, self.frame_size, sample_rate_hz)
        self._high = _GroupSearch(HIGH_GROUP_HZ, self.frame_size, sample_rate_hz)
        self._window = self._low.bank.window
        self._window_energy = float(np.sum(self._window**2))
        self._pending: FloatArray = np.zeros(0)
        self._digit_frames = math.ceil(MIN_DIGIT_MS / FRAME_MS)
        self._pause_frames = math.ceil(MIN_PAUSE_MS / FRAME_MS)
        self._candidate: str | None = None
        self._candidate_run = 0
        self._held: str | None = None
        self._absent_run = 0

    def feed(self, samples: npt.NDArray[np.integer] | npt.NDArray[np.floating]) -> list[str]:
        """Decoded audio (linear PCM, int16 scale); returns the digits completed within it."""
        audio = np.concatenate([self._pending, np.asarray(samples, dtype=np.float64).ravel()])
        whole = len(audio) - len(audio) % self.frame_size
        self._pending = audio[whole:]
        digits: list[str] = []
        for start in range(0, whole, self.frame_size):
            digit = self.classify(audio[start : start + self.frame_size])
            reported = self._step(digit)
            if reported is not None:
                digits.append(reported)
        return digits

    def classify(self, frame: FloatArray) -> str | None:
        """The key one frame's audio holds, or None when it is not a valid DTMF tone pair."""
        if len(frame) != self.frame_size:
            raise DtmfUsageError(f"a frame is {self.frame_size} samples, not {len(frame)}")
        low = self._low.strongest(frame)
        high = self._high.strongest(frame)
        if max(abs(low.deviation), abs(high.deviation)) > MAX_FREQUENCY_DEVIATION:
            return None
        floor = DBM0_AMPLITUDE * 10 ** (MIN_TONE_DBM0 / 20)
        if min(low.amplitude, high.amplitude) < floor:
            return None
        twist_db = 20 * math.log10(high.amplitude / low.amplitude)
        if not -REVERSE_TWIST_DB - TWIST_MARGIN_DB <= twist_db <= NORMAL_TWIST_DB + TWIST_MARGIN_DB:
            return None
        windowed = frame * self._window
        total = float(windowed @ windowed)
        pair = (low.amplitude**2 + high.amplitude**2) / 2 * self._window_energy
        if pair < MIN_TONE_ENERGY_FRACTION * total:
            return None
        if self._harmonics_too_strong(frame, low, high):
            return None
        return KEYPAD[low.index][high.index]

    def _harmonics_too_strong(self, frame: FloatArray, low: _Tone, high: _Tone) -> bool:
        """Whether either tone's second harmonic is near its level, as in speech (talk-off)."""
        judged = [high]
        if abs(2 * low.frequency_hz - high.frequency_hz) >= HARMONIC_CLEARANCE_HZ:
            judged.append(low)
        harmonics = np.array([2 * tone.frequency_hz for tone in judged])
        bank = GoertzelBank(harmonics, self.frame_size, self.sample_rate_hz)
        levels = bank.amplitude(frame)
        limit = 10 ** (MAX_SECOND_HARMONIC_DB / 20)
        return any(
            level > limit * tone.amplitude for level, tone in zip(levels, judged, strict=True)
        )

    def _step(self, digit: str | None) -> str | None:
        """Advance the hold and pause counts by one frame; the digit to report, if one is due."""
        if digit is not None and digit == self._candidate:
            self._candidate_run += 1
        else:
            self._candidate = digit
            self._candidate_run = 0 if digit is None else 1
        if digit == self._held:
            self._absent_run = 0
        else:
            self._absent_run += 1
            if self._absent_run >= self._pause_frames:
                self._held = None
        if (
            self._candidate is not None
            and self._candidate_run >= self._digit_frames
            and self._candidate != self._held
        ):
            self._held = self._candidate
            self._absent_run = 0
            return self._candidate
        return None
