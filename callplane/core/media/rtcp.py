"""RTCP packets (RFC 3550 §6): SR, RR, SDES, BYE, compound packets, and reception statistics.

Wire types are symmetric: each packet class has `parse(data)` for exactly one packet and
`bytes(packet)`; `parse_compound` splits a compound datagram (§6.1). `ReceptionStats` keeps what a
receiver report block says about one source (§6.4.1, Appendix A.3 and A.8) from arrivals the shell
passes in: no clock is read here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from callplane.core.media.rtp import (
    MIN_SEQUENTIAL,
    SSRC_MOD,
    TIMESTAMP_MOD,
    SequenceTracker,
    SequenceVerdict,
)

RTCP_VERSION = 2  # RFC 3550 §6.4.1: same version as RTP
HEADER_BYTES = 4  # RFC 3550 §6.4.1: V/P/count, packet type, length
MAX_COUNT = 31  # RFC 3550 §6.4.1: report, source and chunk counts are 5-bit fields
MAX_LENGTH_WORDS = 0xFFFF  # RFC 3550 §6.4.1: the length is a 16-bit count of words minus one

PT_SR = 200  # RFC 3550 §12.1
PT_RR = 201
PT_SDES = 202
PT_BYE = 203

SDES_END = 0  # RFC 3550 §6.5: the null item that ends a chunk
SDES_CNAME = 1  # RFC 3550 §6.5.1
MAX_SDES_TEXT = 255  # RFC 3550 §6.5: item length is one octet
MAX_REASON_BYTES = 255  # RFC 3550 §6.6: the reason length is one octet

REPORT_BLOCK_BYTES = 24  # RFC 3550 §6.4.1: six 32-bit words per reception report block
SENDER_INFO_BYTES = 20  # RFC 3550 §6.4.1: NTP (8), RTP timestamp, packet and octet counts
MAX_CUMULATIVE_LOST = 0x7FFFFF  # RFC 3550 §6.4.1: cumulative lost is a signed 24-bit field
MIN_CUMULATIVE_LOST = -0x800000
NTP_MOD = 1 << 64  # RFC 3550 §4: 64-bit NTP timestamp, seconds since 1900 in 32.32 fixed point
NTP_UNIX_OFFSET_S = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (Unix)
DLSR_UNITS_PER_S = 65_536  # RFC 3550 §6.4.1: DLSR is expressed in units of 1/65536 seconds
JITTER_GAIN = 16  # RFC 3550 §6.4.1: J(i) = J(i-1) + (|D(i-1,i)| - J(i-1)) / 16

_HEADER = struct.Struct("!BBH")
_WORD = struct.Struct("!I")
_SENDER_INFO = struct.Struct("!QIII")
_REPORT_BLOCK = struct.Struct("!IB3sIIII")
_VERSION_BITS = RTCP_VERSION << 6
_PADDING_BIT = 0x20
_COUNT_MASK = 0x1F

Buffer = bytes | bytearray | memoryview


class RtcpError(ValueError):
    """Bytes that are not valid RTCP, or a field out of its range; the text names the fault."""


def _check_range(name: str, value: int, modulus: int) -> None:
    if not 0 <= value < modulus:
        raise RtcpError(f"{name} {value} out of range 0..{modulus - 1}")


def _check_count(name: str, count: int) -> None:
    if count > MAX_COUNT:
        raise RtcpError(f"{count} {name}, at most {MAX_COUNT} in one packet")


def _header(count: int, packet_type: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise RtcpError(f"body of {len(body)} bytes is not whole 32-bit words")
    words = len(body) // 4
    if words > MAX_LENGTH_WORDS:
        raise RtcpError(f"packet of {words + 1} words exceeds the 16-bit length field")
    return _HEADER.pack(_VERSION_BITS | count, packet_type, words) + body


def _split_header(data: bytes) -> tuple[int, int, bytes]:
    """(count, packet type, body without padding) of exactly one RTCP packet."""
    size = len(data)
    if size < HEADER_BYTES:
        raise RtcpError(f"truncated: {size} bytes, the header needs {HEADER_BYTES}")
    first, packet_type, words = _HEADER.unpack_from(data)
    version = first >> 6
    if version != RTCP_VERSION:
        raise RtcpError(f"version {version}, expected {RTCP_VERSION}")
    length = HEADER_BYTES + 4 * words
    if length != size:
        raise RtcpError(f"length field says {length} bytes, packet has {size}")
    end = size
    if first & _PADDING_BIT:
        padding = data[-1]
        if padding == 0 or HEADER_BYTES + padding > size:
            raise RtcpError(f"bad padding count {padding} in a {size}-byte packet")
        end -= padding
    return first & _COUNT_MASK, packet_type, data[HEADER_BYTES:end]


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1): what we heard from source `ssrc`."""

    ssrc: int
    fraction_lost: int  # 8-bit fixed point: lost / expected since the last report, times 256
    cumulative_lost: int  # signed 24-bit: negative when duplicates outnumber losses
    highest_sequence: int  # extended highest sequence number received (cycles << 16 | max)
    jitter: int  # interarrival jitter in timestamp units
    last_sr: int = 0  # LSR: middle 32 bits of the last SR's NTP timestamp, 0 if none
    delay_since_last_sr: int = 0  # DLSR: in 1/65536 s since that SR arrived, 0 if none

    def __post_init__(self) -> None:
        _check_range("SSRC", self.ssrc, SSRC_MOD)
        _check_range("fraction lost", self.fraction_lost, 256)
        if not MIN_CUMULATIVE_LOST <= self.cumulative_lost <= MAX_CUMULATIVE_LOST:
            raise RtcpError(f"cumulative lost {self.cumulative_lost} outside signed 24 bits")
        _check_range("highest sequence", self.highest_sequence, 1 << 32)
        _check_range("jitter", self.jitter, 1 << 32)
        _check_range("LSR", self.last_sr, 1 << 32)
        _check_range("DLSR", self.delay_since_last_sr, 1 << 32)

    def __bytes__(self) -> bytes:
        lost = (self.cumulative_lost & 0xFFFFFF).to_bytes(3, "big")
        return _REPORT_BLOCK.pack(
            self.ssrc,
            self.fraction_lost,
            lost,
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ReportBlock:
        ssrc, fraction, lost_bytes, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(
            data, offset
        )
        lost = int.from_bytes(lost_bytes, "big", signed=True)
        return cls(ssrc, fraction, lost, highest, jitter, lsr, dlsr)


def _parse_blocks(body: bytes, offset: int, count: int) -> tuple[tuple[ReportBlock, ...], bytes]:
    end = offset + count * REPORT_BLOCK_BYTES
    if end > len(body):
        raise RtcpError(f"{count} report blocks overrun a {len(body) + HEADER_BYTES}-byte packet")
    blocks = tuple(ReportBlock.parse(body, offset + i * REPORT_BLOCK_BYTES) for i in range(count))
    return blocks, body[end:]


def _check_extension(extension: bytes) -> None:
    if len(extension) % 4:
        raise RtcpError(f"profile extension of {len(extension)} bytes is not whole words")


@dataclass(frozen=True, slots=True)
class SenderReport:
    """SR (RFC 3550 §6.4.1): a sender's NTP and RTP clocks, its counts, and its reports."""

    ssrc: int
    ntp_timestamp: int  # 64-bit NTP time, 32.32 fixed point (§4)
    rtp_timestamp: int  # the same instant in the RTP clock of the sender's stream
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""  # profile-specific extension (§6.4.3)

    def __post_init__(self) -> None:
        _check_range("SSRC", self.ssrc, SSRC_MOD)
        _check_range("NTP timestamp", self.ntp_timestamp, NTP_MOD)
        _check_range("RTP timestamp", self.rtp_timestamp, TIMESTAMP_MOD)
        _check_range("packet count", self.packet_count, 1 << 32)
        _check_range("octet count", self.octet_count, 1 << 32)
        _check_count("report blocks", len(self.reports))
        _check_extension(self.extension)

    def __bytes__(self) -> bytes:
        body = _WORD.pack(self.ssrc) + _SENDER_INFO.pack(
            self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )
        body += b"".join(bytes(block) for block in self.reports) + self.extension
        return _header(len(self.reports), PT_SR, body)

    @classmethod
    def parse(cls, data: Buffer) -> SenderReport:
        count, packet_type, body = _split_header(bytes(data))
        _expect(packet_type, PT_SR)
        if len(body) < 4 + SENDER_INFO_BYTES:
            raise RtcpError(f"SR truncated: {len(body) + HEADER_BYTES} bytes")
        (ssrc,) = _WORD.unpack_from(body)
        ntp, rtp_timestamp, packets, octets = _SENDER_INFO.unpack_from(body, 4)
        reports, extension = _parse_blocks(body, 4 + SENDER_INFO_BYTES, count)
        _check_extension(extension)
        return cls(ssrc, ntp, rtp_timestamp, packets, octets, reports, extension)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RR (RFC 3550 §6.4.2): reception reports from a participant that is not sending."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""  # profile-specific extension (§6.4.3)

    def __post_init__(self) -> None:
        _check_range("SSRC", self.ssrc, SSRC_MOD)
        _check_count("report blocks", len(self.reports))
        _check_extension(self.extension)

    def __bytes__(self) -> bytes:
        body = _WORD.pack(self.ssrc) + b"".join(bytes(block) for block in self.reports)
        return _header(len(self.reports), PT_RR, body + self.extension)

    @classmethod
    def parse(cls, data: Buffer) -> ReceiverReport:
        count, packet_type, body = _split_header(bytes(data))
        _expect(packet_type, PT_RR)
        if len(body) < 4:
            raise RtcpError(f"RR truncated: {len(body) + HEADER_BYTES} bytes")
        (ssrc,) = _WORD.unpack_from(body)
        reports, extension = _parse_blocks(body, 4, count)
        _check_extension(extension)
        return cls(ssrc, reports, extension)


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk (RFC 3550 §6.5): a source and its (item type, text) pairs, in order."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        _check_range("SSRC", self.ssrc, SSRC_MOD)
        for item_type, text in self.items:
            if not 0 < item_type < 256:
                raise RtcpError(f"SDES item type {item_type} out of range 1..255")
            if len(text) > MAX_SDES_TEXT:
                raise RtcpError(f"SDES item of {len(text)} bytes exceeds {MAX_SDES_TEXT}")

    @property
    def cname(self) -> str | None:
        """The CNAME (§6.5.1), the canonical end-point name, if the chunk carries one."""
        for item_type, text in self.items:
            if item_type == SDES_CNAME:
                return text.decode("utf-8", "replace")
        return None

    def __bytes__(self) -> bytes:
        parts = [_WORD.pack(self.ssrc)]
        for item_type, text in self.items:
            parts.append(bytes((item_type, len(text))) + text)
        chunk = b"".join(parts)
        # §6.5: at least one null octet ends the item list, then nulls to the next word
        return chunk + bytes(4 - len(chunk) % 4)


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES (RFC 3550 §6.5): chunks describing sources, CNAME first by convention."""

    chunks: tuple[SdesChunk, ...]

    def __post_init__(self) -> None:
        _check_count("SDES chunks", len(self.chunks))

    @classmethod
    def with_cname(cls, ssrc: int, cname: str) -> SourceDescription:
        """The SDES every compound packet carries (§6.1): one chunk with our CNAME."""
        return cls((SdesChunk(ssrc, ((SDES_CNAME, cname.encode("utf-8")),)),))

    def __bytes__(self) -> bytes:
        body = b"".join(bytes(chunk) for chunk in self.chunks)
        return _header(len(self.chunks), PT_SDES, body)

    @classmethod
    def parse(cls, data: Buffer) -> SourceDescription:
        count, packet_type, body = _split_header(bytes(data))
        _expect(packet_type, PT_SDES)
        chunks: list[SdesChunk] = []
        offset = 0
        for _ in range(count):
            if offset + 4 > len(body):
                raise RtcpError(f"SDES truncated: chunk {len(chunks) + 1} of {count} is missing")
            (ssrc,) = _WORD.unpack_from(body, offset)
            offset += 4
            items = []
            while True:
                if offset >= len(body):
                    raise RtcpError("SDES truncated: a chunk has no terminating null item")
                item_type = body[offset]
                if item_type == SDES_END:
                    break
                if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
                    raise RtcpError(f"SDES item of type {item_type} overruns the packet")
                length = body[offset + 1]
                items.append((item_type, body[offset + 2 : offset + 2 + length]))
                offset += 2 + length
            offset += 4 - offset % 4  # the null item and the nulls up to the next word
            chunks.append(SdesChunk(ssrc, tuple(items)))
        if offset != len(body):
            raise RtcpError(f"SDES has {len(body) - offset} bytes after its {count} chunks")
        return cls(tuple(chunks))


@dataclass(frozen=True, slots=True)
class Bye:
    """BYE (RFC 3550 §6.6): the listed sources are leaving, with an optional reason."""

    sources: tuple[int, ...]
    reason: str | None = None

    def __post_init__(self) -> None:
        _check_count("BYE sources", len(self.sources))
        for ssrc in self.sources:
            _check_range("SSRC", ssrc, SSRC_MOD)
        if self.reason is not None and len(self.reason.encode("utf-8")) > MAX_REASON_BYTES:
            raise RtcpError(f"BYE reason longer than {MAX_REASON_BYTES} bytes")

    def __bytes__(self) -> bytes:
        body = b"".join(_WORD.pack(ssrc) for ssrc in self.sources)
        if self.reason is not None:
            text = self.reason.encode("utf-8")
            reason = bytes((len(text),)) + text
            body += reason + bytes(-len(reason) % 4)
        return _header(len(self.sources), PT_BYE, body)

    @classmethod
    def parse(cls, data: Buffer) -> Bye:
        count, packet_type, body = _split_header(bytes(data))
        _expect(packet_type, PT_BYE)
        end = 4 * count
        if end > len(body):
            raise RtcpError(f"BYE truncated: {count} sources need {end + HEADER_BYTES} bytes")
        sources = struct.unpack_from(f"!{count}I", body)
        reason = None
        if end < len(body):
            length = body[end]
            if end + 1 + length > len(body):
                raise RtcpError(f"BYE reason of {length} bytes overruns the packet")
            try:
                reason = body[end + 1 : end + 1 + length].decode("utf-8")
            except UnicodeDecodeError as error:
                raise RtcpError(f"BYE reason is not UTF-8: {error}") from None
        return cls(sources, reason)


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """An RTCP packet of a type this module does not decode (APP §6.7, RFC 4585 feedback...):
    kept whole so a compound packet still parses and re-serializes."""

    packet_type: int
    count: int
    body: bytes

    def __post_init__(self) -> None:
        _check_range("packet type", self.packet_type, 256)
        _check_range("count", self.count, MAX_COUNT + 1)
        if len(self.body) % 4:
            raise RtcpError(f"body of {len(self.body)} bytes is not whole 32-bit words")

    def __bytes__(self) -> bytes:
        return _header(self.count, self.packet_type, self.body)

    @classmethod
    def parse(cls, data: Buffer) -> UnknownRtcp:
        count, packet_type, body = _split_header(bytes(data))
        return cls(packet_type, count, body[: len(body) - len(body) % 4])


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcp

_PARSERS: dict[int, Callable[[Buffer], RtcpPacket]] = {
    PT_SR: SenderReport.parse,
    PT_RR: ReceiverReport.parse,
    PT_SDES: SourceDescription.parse,
    PT_BYE: Bye.parse,
}


def _expect(packet_type: int, expected: int) -> None:
    if packet_type != expected:
        raise RtcpError(f"packet type {packet_type}, expected {expected}")


def parse_packet(data: Buffer) -> RtcpPacket:
    """Decode exactly one RTCP packet, dispatching on its packet type (RFC 3550 §12.1)."""
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise RtcpError(f"truncated: {len(data)} bytes, the header needs {HEADER_BYTES}")
    parser = _PARSERS.get(data[1], UnknownRtcp.parse)
    return parser(data)


def parse_compound(data: Buffer) -> tuple[RtcpPacket, ...]:
    """Split and decode a compound RTCP datagram (RFC 3550 §6.1).

    The order rule (SR or RR first) is not enforced, so reduced-size RTCP (RFC 5506) parses too.
    """
    data = bytes(data)
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        if offset + HEADER_BYTES > len(data):
            raise RtcpError(f"truncated: {len(data) - offset} stray bytes after packet {offset}")
        (words,) = struct.unpack_from("!H", data, offset + 2)
        end = offset + HEADER_BYTES + 4 * words
        if end > len(data):
            raise RtcpError(f"truncated: packet at {offset} needs {end} bytes, have {len(data)}")
        packets.append(parse_packet(data[offset:end]))
        offset = end
    if not packets:
        raise RtcpError("empty datagram")
    return tuple(packets)


def build_compound(packets: tuple[RtcpPacket, ...] | list[RtcpPacket]) -> bytes:
    """Concatenate packets into one compound datagram (RFC 3550 §6.1)."""
    return b"".join(bytes(packet) for packet in packets)


def ntp_timestamp(unix_s: float) -> int:
    """The 64-bit NTP timestamp (RFC 3550 §4) of a Unix time in seconds, passed in by the shell."""
    return round((unix_s + NTP_UNIX_OFFSET_S) * (1 << 32)) % NTP_MOD


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field of a report block (§6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


class ReceptionStats:
    """What we know of one incoming source, for its report block (RFC 3550 §6.4.1).

    `record` takes each packet's sequence, RTP timestamp and arrival time in the same RTP clock
    units (the shell converts its clock); the interarrival jitter follows A.8, loss follows A.3.
    """

    __slots__ = (
        "_expected_prior",
        "_last_sr",
        "_last_sr_arrival_s",
        "_received_prior",
        "_transit",
        "jitter",
        "ssrc",
        "tracker",
    )

    def __init__(self, ssrc: int, min_sequential: int = MIN_SEQUENTIAL) -> None:
        _check_range("SSRC", ssrc, SSRC_MOD)
        self.ssrc = ssrc
        self.tracker = SequenceTracker(min_sequential)
        self.jitter = 0.0  # A.8, in timestamp units, unrounded
        self._transit: int | None = None
        self._expected_prior = 0
        self._received_prior = 0
        self._last_sr = 0
        self._last_sr_arrival_s = 0.0

    def record(self, sequence: int, timestamp: int, arrival: int) -> SequenceVerdict:
        """Account for one RTP packet; the verdict says whether the caller should use it."""
        verdict = self.tracker.update(sequence)
        if verdict in (SequenceVerdict.PROBATION, SequenceVerdict.DISCARDED):
            return verdict
        if verdict is SequenceVerdict.RESTARTED:
            self._transit = None
            self._expected_prior = 0
            self._received_prior = 0
        transit = arrival - timestamp
        if self._transit is not None:
            # §6.4.1: D(i-1,i) = (Rj - Ri) - (Sj - Si), both clocks modulo the 32-bit timestamp
            difference = (transit - self._transit) % TIMESTAMP_MOD
            if difference >= TIMESTAMP_MOD // 2:
                difference = TIMESTAMP_MOD - difference
            self.jitter += (difference - self.jitter) / JITTER_GAIN
        self._transit = transit
        return verdict

    def note_sender_report(self, report: SenderReport, arrival_s: float) -> None:
        """Remember the source's last SR for the LSR/DLSR fields (§6.4.1)."""
        self._last_sr = ntp_middle(report.ntp_timestamp)
        self._last_sr_arrival_s = arrival_s

    def report_block(self, now_s: float) -> ReportBlock:
        """The report block to send now; starts a new interval for the fraction lost (A.3)."""
        tracker = self.tracker
        expected = tracker.expected if tracker.received else 0
        lost = max(MIN_CUMULATIVE_LOST, min(MAX_CUMULATIVE_LOST, expected - tracker.received))
        expected_interval = expected - self._expected_prior
        received_interval = tracker.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = tracker.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        delay = 0
        if self._last_sr:
            delay = round((now_s - self._last_sr_arrival_s) * DLSR_UNITS_PER_S)
            delay = max(0, min(delay, 0xFFFFFFFF))
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            cumulative_lost=lost,
            highest_sequence=tracker.extended_max % (1 << 32) if tracker.received else 0,
            jitter=int(self.jitter),
            last_sr=self._last_sr,
            delay_since_last_sr=delay,
        )
