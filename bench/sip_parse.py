"""SIP message parse + serialize throughput on a typical INVITE, against a stdlib baseline.

Baseline: the same bytes through `email.parser.BytesHeaderParser` (the stdlib's RFC 5322 header
parser, which SIP's syntax borrows from) and back with `bytes(msg)`: what one gets without a SIP
parser. Prints messages per second for each, then the ratio Callplane / baseline last.
Run: `.venv/bin/python bench/sip_parse.py [N]`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from email.parser import BytesHeaderParser
from email.policy import compat32

from callplane.core.sip.message import parse

DEFAULT_ROUNDS = 20_000  # about a second per figure on one core of the reference machine

SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n"
    b"c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
INVITE = (
    b"INVITE sip:1002@pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:1001@pbx.example.com>;tag=1928301774\r\n'
    b"To: <sip:1002@pbx.example.com>\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.10\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:1001@192.0.2.10:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER, NOTIFY\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: baresip 3.1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)


def callplane_round(data: bytes) -> bytes:
    message = parse(data)
    _ = message.via[0].branch  # what every transaction lookup reads
    return bytes(message)


def baseline_round(data: bytes) -> bytes:
    head, _, body = data.partition(b"\r\n\r\n")
    start, _, rest = head.partition(b"\r\n")
    message = BytesHeaderParser(policy=compat32).parsebytes(rest + b"\r\n\r\n")
    message.get("Via")
    return start + b"\r\n" + message.as_bytes() + body


def rate(round_trip: Callable[[bytes], bytes], rounds: int) -> float:
    round_trip(INVITE)
    begin = time.perf_counter()
    for _ in range(rounds):
        round_trip(INVITE)
    return rounds / (time.perf_counter() - begin)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ROUNDS
    ours = rate(callplane_round, rounds)
    base = rate(baseline_round, rounds)
    print(f"callplane parse+serialize: {ours:,.0f} msgs/s")
    print(f"baseline email.parser.BytesHeaderParser parse+serialize: {base:,.0f} msgs/s")
    print(f"ratio callplane/baseline: {ours / base:.2f}")


if __name__ == "__main__":
    main()
