"""A small fixed-delay jitter buffer for 20 ms voice frames, with loss concealment by repetition.

The shell pushes each RTP payload as it arrives and pops one frame per 20 ms tick. Frames come out
in sequence order (RFC 3550 §5.1: the sequence number orders packets; 16-bit, so it wraps at
65535), packets reordered within the buffer's depth are put back in place, duplicates and packets
that arrive after their slot was played are dropped and counted. A missing frame is concealed by
repeating the last one a few times, then by silence, the simplest form of the packet loss
concealment ITU-T G.711 Appendix I describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

SEQ_MOD = 1 << 16  # RFC 3550 §5.1: 16-bit sequence numbers
HALF_SEQ = SEQ_MOD // 2  # a difference below this is "ahead", above it "behind" (serial arithmetic)
DEFAULT_DEPTH_FRAMES = 3  # 60 ms at 20 ms per frame: covers the jitter of a LAN or a good trunk
DEFAULT_FRAME_BYTES = 160  # 20 ms of G.711: 8000 samples/s, one byte each (RFC 3551 §4.5.14)
MAX_CONCEALED_REPEATS = 3  # G.711 Appendix I repeats pitch periods for up to 60 ms, then mutes:
# beyond ~60 ms a repeated frame sounds like a buzz rather than speech
OVERFLOW_SLACK_FRAMES = 5  # 100 ms: a burst after a stall that puts more than this beyond the
# depth is trimmed (oldest first) so the added delay goes back to `depth_frames` instead of
# staying for the rest of the call; a smaller burst plays out, its extra delay kept until the
# stream next pauses
MAX_MISORDER = 100  # RFC 3550 A.1: a packet further behind than this may be a restart, not a
# late one; as in A.1 the restart is believed when the next packet follows it
PLAYED_WINDOW = 64  # played sequence numbers remembered to tell a duplicate from a late packet
MULAW_SILENCE = 0xFF  # ITU-T G.711: the µ-law code of +0 (all bits inverted)
ALAW_SILENCE = 0xD5  # ITU-T G.711: the A-law code of +0 (sign bit set, even bits inverted)

_PLAYED_MASK = (1 << PLAYED_WINDOW) - 1


class JitterBufferError(ValueError):
    """A jitter buffer set up with impossible parameters (our own misuse)."""


class _Phase(Enum):
    IDLE = "idle"  # nothing received since creation or reset: silence, not counted as loss
    FILLING = "filling"  # waiting until `depth_frames` are buffered before playing
    PLAYING = "playing"


@dataclass(frozen=True, slots=True)
class JitterStats:
    """Counters of one jitter buffer since it was created (resets keep them)."""

    received: int  # packets pushed, whatever became of them
    played: int  # frames popped from a received packet
    late: int  # packets whose slot was already played or concealed, or strays far behind
    duplicate: int  # copies of a packet already buffered or played
    concealed: int  # frames popped for a missing packet while playing (repeat or silence);
    # a pause longer than the repeats stops the count until the stream fills the buffer again
    overflow: int  # frames dropped to bring the delay back after a burst
    resets: int  # new source (SSRC) or sequence restart


class JitterBuffer:
    """Reorders RTP payloads of one stream and hands out one frame per tick.

    Playout starts once `depth_frames` consecutive slots are covered, or the first frame has
    waited `depth_frames` ticks (the delay that absorbs jitter). Each tick then plays the next
    slot; a missing frame is concealed by repeating the last played frame up to `max_repeats`
    times, then by silence made of `silence_byte` (0xFF for µ-law, 0xD5 for A-law). When the
    stream stops (hold, silence suppression: RFC 3551 §4.1 keeps sequence numbers running across
    it) the buffer goes back to the slot after the last real frame and fills again, so the next
    talkspurt plays with the full depth.
    """

    def __init__(
        self,
        depth_frames: int = DEFAULT_DEPTH_FRAMES,
        *,
        silence_byte: int = MULAW_SILENCE,
        frame_bytes: int = DEFAULT_FRAME_BYTES,
        max_repeats: int = MAX_CONCEALED_REPEATS,
    ) -> None:
        if depth_frames < 1:
            raise JitterBufferError(f"depth of {depth_frames} frames, at least 1 is needed")
        if not 0 <= silence_byte <= 0xFF:
            raise JitterBufferError(f"silence byte {silence_byte} is not a byte")
        if frame_bytes < 1:
            raise JitterBufferError(f"frame of {frame_bytes} bytes, at least 1 is needed")
        if max_repeats < 0:
            raise JitterBufferError(f"max_repeats {max_repeats} is negative")
        self.depth_frames = depth_frames
        self.max_repeats = max_repeats
        self._silence_byte = silence_byte
        self._silence = bytes((silence_byte,)) * frame_bytes
        self._frames: dict[int, tuple[int, bytes]] = {}  # sequence -> (timestamp, payload)
        self._phase = _Phase.IDLE
        self._fresh = True  # nothing played since the stream (re)started: no lower bound yet
        self._next = 0  # PLAYING: the slot the next pop plays; FILLING: the oldest slot accepted
        self._played = 0  # bit i: slot (_next - 1 - i) was played from a real packet
        self._misses = 0  # consecutive slots concealed
        self._waited = 0  # ticks a buffered frame has waited while filling
        self._restart_at = -1  # the sequence that would confirm a restart far behind (A.1)
        self._last_frame: bytes | None = None
        self._ssrc: int | None = None
        self.playout_timestamp: int | None = None  # RTP timestamp of the last real frame played
        self._received = 0
        self._played_count = 0
        self._late = 0
        self._duplicate = 0
        self._concealed = 0
        self._overflow = 0
        self._resets = 0

    @property
    def stats(self) -> JitterStats:
        return JitterStats(
            received=self._received,
            played=self._played_count,
            late=self._late,
            duplicate=self._duplicate,
            concealed=self._concealed,
            overflow=self._overflow,
            resets=self._resets,
        )

    def __len__(self) -> int:
        """Packets waiting to be played."""
        return len(self._frames)

    def reset(self) -> None:
        """Forget buffered frames and the sequence position: the next push starts a new stream."""
        self._frames.clear()
        self._phase = _Phase.IDLE
        self._fresh = True
        self._played = 0
        self._misses = 0
        self._waited = 0
        self._restart_at = -1
        self._resets += 1

    def push(self, sequence: int, timestamp: int, payload: bytes, ssrc: int | None = None) -> None:
        """Buffer one received packet; an `ssrc` different from the last one starts a new stream."""
        self._received += 1
        sequence %= SEQ_MOD
        if ssrc is not None:
            if self._ssrc is not None and ssrc != self._ssrc:
                self.reset()
            self._ssrc = ssrc
        behind = (self._next - sequence) % SEQ_MOD
        if self._phase is not _Phase.IDLE and MAX_MISORDER < behind < HALF_SEQ:
            if sequence != self._restart_at:
                self._restart_at = (sequence + 1) % SEQ_MOD
                self._late += 1
                return
            self.reset()
        if self._phase is _Phase.IDLE:
            self._next = sequence
            self._phase = _Phase.FILLING
            behind = 0
        if 0 < behind < HALF_SEQ:
            if self._fresh:
                self._next = sequence  # reordered before anything played: it plays first
            else:
                if behind <= PLAYED_WINDOW and self._played >> (behind - 1) & 1:
                    self._duplicate += 1
                else:
                    self._late += 1
                return
        if sequence in self._frames:
            self._duplicate += 1
            return
        self._frames[sequence] = (timestamp, payload)
        if self._phase is _Phase.FILLING and self._span_from_head() >= self.depth_frames:
            self._start_playing()
        if self._phase is _Phase.PLAYING:
            self._trim()

    def pop(self) -> bytes:
        """The frame for this tick: the next in sequence, a repeat of the last, or silence."""
        if self._phase is _Phase.FILLING and self._frames:
            self._waited += 1
            if self._waited >= self.depth_frames:
                self._start_playing()
        if self._phase is not _Phase.PLAYING:
            return self._silence_frame()
        entry = self._frames.pop(self._next, None)
        if entry is not None:
            timestamp, payload = entry
            self._advance(played=True)
            self._misses = 0
            self._last_frame = payload
            self.playout_timestamp = timestamp
            self._played_count += 1
            return payload
        self._concealed += 1
        self._misses += 1
        if self._last_frame is not None and self._misses <= self.max_repeats:
            frame = self._last_frame
        else:
            frame = self._silence_frame()
        self._advance(played=False)
        if not self._frames and self._misses > self.max_repeats:
            # the stream paused: wait for the slot after the last real frame, and refill
            self._next = (self._next - self._misses) % SEQ_MOD
            self._played >>= self._misses
            self._misses = 0
            self._waited = 0
            self._phase = _Phase.FILLING
        return frame

    def _silence_frame(self) -> bytes:
        if self._last_frame is not None and len(self._last_frame) != len(self._silence):
            return bytes((self._silence_byte,)) * len(self._last_frame)
        return self._silence

    def _advance(self, *, played: bool) -> None:
        self._played = ((self._played << 1) | played) & _PLAYED_MASK
        self._next = (self._next + 1) % SEQ_MOD

    def _offsets(self) -> list[int]:
        return [(sequence - self._next) % SEQ_MOD for sequence in self._frames]

    def _span_from_head(self) -> int:
        """Slots from the oldest buffered frame to the newest, inclusive."""
        offsets = self._offsets()
        return max(offsets) - min(offsets) + 1

    def _start_playing(self) -> None:
        """Play from the oldest buffered frame: slots before it were covered while filling."""
        skip = min(self._offsets())
        self._played = (self._played << skip) & _PLAYED_MASK
        self._next = (self._next + skip) % SEQ_MOD
        self._phase = _Phase.PLAYING
        self._fresh = False
        self._waited = 0

    def _trim(self) -> None:
        """After a burst, drop the oldest frames so the delay comes back to `depth_frames`."""
        span = 1 + max(self._offsets())
        if span <= self.depth_frames + OVERFLOW_SLACK_FRAMES:
            return
        skip = span - self.depth_frames
        for sequence in [s for s in self._frames if (s - self._next) % SEQ_MOD < skip]:
            del self._frames[sequence]
            self._overflow += 1
        self._played = (self._played << skip) & _PLAYED_MASK
        self._next = (self._next + skip) % SEQ_MOD
