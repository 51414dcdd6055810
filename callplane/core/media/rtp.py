"""RTP packets (RFC 3550 §5.1), sequence tracking (Appendix A.1) and SSRC continuity for a relay.

Wire type: `parse(data) -> RtpPacket` and `bytes(packet)`. The relay's hot path does not build
packets: `peek_header` reads the four fields it needs with one `struct.unpack_from`, and
`rewrite_header` patches sequence, timestamp and SSRC in place in the datagram's buffer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

RTP_VERSION = 2  # RFC 3550 §5.1: "the version defined by this specification is two (2)"
HEADER_BYTES = 12  # RFC 3550 §5.1: the fixed header, before CSRCs and the extension
MAX_CSRCS = 15  # RFC 3550 §5.1: the CSRC count is a 4-bit field
MAX_PAYLOAD_TYPE = 127  # RFC 3550 §5.1: the payload type is a 7-bit field
SEQ_MOD = 1 << 16  # RFC 3550 §5.1: the sequence number is a 16-bit field
TIMESTAMP_MOD = 1 << 32  # RFC 3550 §5.1: the timestamp is a 32-bit field
SSRC_MOD = 1 << 32  # RFC 3550 §5.1: the SSRC is a 32-bit field
MAX_PADDING = 255  # RFC 3550 §5.1: the padding count is the last octet, so at most 255
MAX_EXTENSION_WORDS = 0xFFFF  # RFC 3550 §5.3.1: the extension length is a 16-bit count of words
EXTENSION_PROFILE_MOD = 1 << 16  # RFC 3550 §5.3.1: 16 bits "defined by profile"

MAX_DROPOUT = 3000  # RFC 3550 A.1: a forward jump below this is a loss, not a restart
MAX_MISORDER = 100  # RFC 3550 A.1: a packet at most this far behind is late, not a restart
MIN_SEQUENTIAL = 2  # RFC 3550 A.1: in-order packets needed before a new source is valid

_FIXED = struct.Struct("!BBHII")
_PEEK = struct.Struct("!xBHII")  # skips the V/P/X/CC octet, whose version is checked by index
_REWRITE = struct.Struct("!HII")
_EXTENSION_HEADER = struct.Struct("!HH")
_VERSION_MASK = 0xC0
_VERSION_BITS = RTP_VERSION << 6
_PADDING_BIT = 0x20
_EXTENSION_BIT = 0x10
_CSRC_COUNT_MASK = 0x0F
_MARKER_BIT = 0x80
_PAYLOAD_TYPE_MASK = 0x7F

Buffer = bytes | bytearray | memoryview


class RtpError(ValueError):
    """Bytes that are not a valid RTP packet, or a field out of its range; the text names it."""


def _check_range(name: str, value: int, modulus: int) -> None:
    if not 0 <= value < modulus:
        raise RtpError(f"{name} {value} out of range 0..{modulus - 1}")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1).

    `extension` is the header extension (§5.3.1) as (profile-defined 16 bits, data whose length is
    a multiple of 4). `padding` is the count of padding octets including the count octet itself
    (§5.1, P bit); 0 means no padding. Padding octets other than the count are sent as zeros.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    padding: int = 0

    def __post_init__(self) -> None:
        _check_range("payload type", self.payload_type, MAX_PAYLOAD_TYPE + 1)
        _check_range("sequence", self.sequence, SEQ_MOD)
        _check_range("timestamp", self.timestamp, TIMESTAMP_MOD)
        _check_range("SSRC", self.ssrc, SSRC_MOD)
        _check_range("padding", self.padding, MAX_PADDING + 1)
        if len(self.csrcs) > MAX_CSRCS:
            raise RtpError(f"{len(self.csrcs)} CSRCs, at most {MAX_CSRCS}")
        for csrc in self.csrcs:
            _check_range("CSRC", csrc, SSRC_MOD)
        if self.extension is not None:
            profile, data = self.extension
            _check_range("extension profile", profile, EXTENSION_PROFILE_MOD)
            if len(data) % 4:
                raise RtpError(f"extension of {len(data)} bytes is not whole 32-bit words")
            if len(data) > MAX_EXTENSION_WORDS * 4:
                raise RtpError(
                    f"extension of {len(data)} bytes exceeds {MAX_EXTENSION_WORDS} words"
                )

    def __bytes__(self) -> bytes:
        first = _VERSION_BITS | len(self.csrcs)
        if self.padding:
            first |= _PADDING_BIT
        if self.extension is not None:
            first |= _EXTENSION_BIT
        second = self.payload_type | (_MARKER_BIT if self.marker else 0)
        parts = [_FIXED.pack(first, second, self.sequence, self.timestamp, self.ssrc)]
        if self.csrcs:
            parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
        if self.extension is not None:
            profile, data = self.extension
            parts.append(_EXTENSION_HEADER.pack(profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def parse(data: Buffer) -> RtpPacket:
    """Decode one RTP packet (RFC 3550 §5.1), raising `RtpError` naming the fault."""
    data = bytes(data)
    size = len(data)
    if size < HEADER_BYTES:
        raise RtpError(f"truncated: {size} bytes, the fixed header needs {HEADER_BYTES}")
    first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    version = first >> 6
    if version != RTP_VERSION:
        raise RtpError(f"version {version}, expected {RTP_VERSION}")
    csrc_count = first & _CSRC_COUNT_MASK
    offset = HEADER_BYTES + 4 * csrc_count
    if offset > size:
        raise RtpError(f"CSRC overrun: {csrc_count} CSRCs need {offset} bytes, packet has {size}")
    csrcs = struct.unpack_from(f"!{csrc_count}I", data, HEADER_BYTES) if csrc_count else ()
    extension: tuple[int, bytes] | None = None
    if first & _EXTENSION_BIT:
        if offset + _EXTENSION_HEADER.size > size:
            raise RtpError(f"extension overrun: its header needs {offset + 4} bytes, have {size}")
        profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
        start = offset + _EXTENSION_HEADER.size
        offset = start + 4 * words
        if offset > size:
            raise RtpError(f"extension overrun: {words} words need {offset} bytes, have {size}")
        extension = (profile, data[start:offset])
    end = size
    padding = 0
    if first & _PADDING_BIT:
        padding = data[-1]
        if padding == 0:
            raise RtpError("bad padding: the padding count is 0")
        if offset + padding > size:
            raise RtpError(f"bad padding: {padding} octets, only {size - offset} after the header")
        end = size - padding
    return RtpPacket(
        payload_type=second & _PAYLOAD_TYPE_MASK,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=data[offset:end],
        marker=bool(second & _MARKER_BIT),
        csrcs=csrcs,
        extension=extension,
        padding=padding,
    )


def peek_header(data: Buffer) -> tuple[int, int, int, int] | None:
    """(payload_type, sequence, timestamp, ssrc) of an RTP datagram, or None if it is not RTP v2.

    The relay's hot path: one `unpack_from`, and when the marker bit is clear its tuple is the
    answer. Only the fixed header is read (RFC 3550 §5.1); `parse` validates the rest. With
    RTP/RTCP multiplexing (RFC 5761 §4) the caller tells RTCP apart by payload type 72-76.
    """
    if len(data) < HEADER_BYTES or data[0] & _VERSION_MASK != _VERSION_BITS:
        return None
    header: tuple[int, int, int, int] = _PEEK.unpack_from(data)
    if header[0] & _MARKER_BIT:
        return (header[0] & _PAYLOAD_TYPE_MASK, header[1], header[2], header[3])
    return header


def rewrite_header(
    data: bytearray | memoryview,
    sequence: int,
    timestamp: int,
    ssrc: int,
    *,
    marker: bool | None = None,
) -> None:
    """Overwrite sequence, timestamp and SSRC (and the marker bit unless None) in place.

    For SSRC and timestamp continuity across re-INVITEs (RFC 3550 §8.2 lets a source change its
    SSRC; the far end expects one continuous stream from us). Values are taken modulo their width.
    """
    if len(data) < HEADER_BYTES:
        raise RtpError(f"truncated: {len(data)} bytes, the fixed header needs {HEADER_BYTES}")
    _REWRITE.pack_into(data, 2, sequence % SEQ_MOD, timestamp % TIMESTAMP_MOD, ssrc % SSRC_MOD)
    if marker is not None:
        data[1] = (data[1] | _MARKER_BIT) if marker else (data[1] & _PAYLOAD_TYPE_MASK)


class SequenceVerdict(Enum):
    """What `SequenceTracker.update` made of one sequence number (RFC 3550 A.1)."""

    ACCEPTED = "accepted"  # in order, or ahead after a loss shorter than MAX_DROPOUT
    LATE = "late"  # behind the highest, first copy: reordered but valid
    DUPLICATE = "duplicate"  # a copy of a sequence number already seen
    PROBATION = "probation"  # a new source not yet MIN_SEQUENTIAL packets in order
    RESTARTED = "restarted"  # a second in-order packet after a large jump: the source restarted
    DISCARDED = "discarded"  # a large jump, kept only as a possible restart


_DUPLICATE_WINDOW_MASK = (1 << (MAX_MISORDER + 1)) - 1  # one bit per sequence number behind


class SequenceTracker:
    """Extended sequence numbers of one source, after RFC 3550 Appendix A.1.

    Counts cycles across the 16-bit wrap, puts a new source on probation until `min_sequential`
    packets arrive in order, treats a jump of MAX_DROPOUT or more as a restart only when the next
    packet follows it, and recognises duplicates within MAX_MISORDER of the highest. `received`
    counts every valid packet, duplicates included, as §6.4.1 asks.
    """

    __slots__ = (
        "_bad_seq",
        "_min_sequential",
        "_seen",
        "_started",
        "base_seq",
        "cycles",
        "duplicates",
        "last_extended",
        "max_seq",
        "probation",
        "received",
    )

    def __init__(self, min_sequential: int = MIN_SEQUENTIAL) -> None:
        """`min_sequential` 1 accepts a source on its first packet; A.1's default waits for 2."""
        if min_sequential < 1:
            raise RtpError(f"min_sequential {min_sequential} must be at least 1")
        self._min_sequential = min_sequential
        self._started = False
        self._init(0)
        self.probation = min_sequential
        self.duplicates = 0
        self.last_extended = -1

    def _init(self, sequence: int) -> None:
        self.base_seq = sequence
        self.max_seq = sequence
        self._bad_seq = SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self._seen = 1

    @property
    def extended_max(self) -> int:
        """The highest extended sequence number received (RFC 3550 §6.4.1)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected since the base (RFC 3550 A.3)."""
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost; negative when duplicates outnumber losses (RFC 3550 §6.4.1)."""
        return self.expected - self.received

    def update(self, sequence: int) -> SequenceVerdict:
        """Account for one packet; `last_extended` holds its extended number unless discarded."""
        if not self._started:
            _check_range("sequence", sequence, SEQ_MOD)
            self._started = True
            self._init(sequence)
            self.max_seq = (sequence - 1) % SEQ_MOD
        udelta = (sequence - self.max_seq) % SEQ_MOD
        if self.probation:
            if sequence == (self.max_seq + 1) % SEQ_MOD:
                self.probation -= 1
                self.max_seq = sequence
                if self.probation == 0:
                    self._init(sequence)
                    self.received = 1
                    self.last_extended = sequence
                    return SequenceVerdict.ACCEPTED
            else:
                self.probation = self._min_sequential - 1
                self.max_seq = sequence
            return SequenceVerdict.PROBATION
        if 0 < udelta < MAX_DROPOUT:
            if sequence < self.max_seq:
                self.cycles += SEQ_MOD
            self.max_seq = sequence
            self._seen = ((self._seen << udelta) | 1) & _DUPLICATE_WINDOW_MASK
            verdict = SequenceVerdict.ACCEPTED
        elif udelta == 0 or udelta > SEQ_MOD - MAX_MISORDER:
            behind = (SEQ_MOD - udelta) % SEQ_MOD
            self.received += 1
            self.last_extended = self.extended_max - behind
            if self._seen >> behind & 1:
                self.duplicates += 1
                return SequenceVerdict.DUPLICATE
            self._seen |= 1 << behind
            return SequenceVerdict.LATE
        elif sequence == self._bad_seq:
            self._init(sequence)
            verdict = SequenceVerdict.RESTARTED
        else:
            self._bad_seq = (sequence + 1) % SEQ_MOD
            return SequenceVerdict.DISCARDED
        self.received += 1
        self.last_extended = self.extended_max
        return verdict


class StreamMapper:
    """Our outgoing sequence, timestamp and SSRC for one leg, continuous across source changes.

    When the incoming SSRC changes (re-INVITE, transfer, music on hold replaced by an agent), the
    far end must still see one stream (RFC 3550 §5.1: sequence +1 per packet, timestamp advancing
    with the sampling clock). The new source continues our timestamp from the last one plus the
    frames elapsed since (measured by `arrival`, in RTP clock units passed in by the shell), our
    sequence +1, with the marker bit set (RFC 3551 §4.1: the start of a talkspurt). Packets of
    the same source keep their relative spacing, reordering and gaps included.
    """

    __slots__ = (
        "_last_arrival",
        "_last_sequence",
        "_last_timestamp",
        "_sequence_offset",
        "_source",
        "_timestamp_offset",
        "samples_per_frame",
        "ssrc",
    )

    def __init__(
        self, ssrc: int, first_sequence: int, first_timestamp: int, samples_per_frame: int = 160
    ) -> None:
        """`samples_per_frame`: 160 for 20 ms at G.711's 8000 Hz clock (RFC 3551 §4.5.14)."""
        _check_range("SSRC", ssrc, SSRC_MOD)
        _check_range("sequence", first_sequence, SEQ_MOD)
        _check_range("timestamp", first_timestamp, TIMESTAMP_MOD)
        if samples_per_frame <= 0:
            raise RtpError(f"samples per frame {samples_per_frame} must be positive")
        self.ssrc = ssrc
        self.samples_per_frame = samples_per_frame
        self._source: int | None = None
        self._sequence_offset = 0
        self._timestamp_offset = 0
        self._last_sequence = (first_sequence - 1) % SEQ_MOD
        self._last_timestamp = (first_timestamp - samples_per_frame) % TIMESTAMP_MOD
        self._last_arrival: int | None = None

    def map(
        self, source_ssrc: int, sequence: int, timestamp: int, arrival: int
    ) -> tuple[int, int, bool]:
        """(our sequence, our timestamp, marker) for an incoming packet; marker is True on a
        change of source."""
        switched = source_ssrc != self._source
        if switched:
            if self._last_arrival is None:
                frames = 1
            else:
                elapsed = arrival - self._last_arrival
                frames = max(1, round(elapsed / self.samples_per_frame))
            target_timestamp = self._last_timestamp + frames * self.samples_per_frame
            self._source = source_ssrc
            self._sequence_offset = (self._last_sequence + 1 - sequence) % SEQ_MOD
            self._timestamp_offset = (target_timestamp - timestamp) % TIMESTAMP_MOD
        out_sequence = (sequence + self._sequence_offset) % SEQ_MOD
        out_timestamp = (timestamp + self._timestamp_offset) % TIMESTAMP_MOD
        if switched or (out_sequence - self._last_sequence) % SEQ_MOD < SEQ_MOD // 2:
            self._last_sequence = out_sequence
            self._last_timestamp = out_timestamp
            self._last_arrival = arrival
        return out_sequence, out_timestamp, switched

    def forward(self, data: bytearray | memoryview, arrival: int) -> bool:
        """Rewrite an RTP datagram in place for sending on our leg; False if it is not RTP."""
        header = peek_header(data)
        if header is None:
            return False
        sequence, timestamp, switched = self.map(header[3], header[1], header[2], arrival)
        rewrite_header(data, sequence, timestamp, self.ssrc, marker=True if switched else None)
        return True
