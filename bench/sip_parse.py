"""SIP message parse + serialize throughput on typical call messages, against a stdlib baseline.

Figures: a typical INVITE, its 200 OK and a BYE, each parsed (reading the top Via's branch, as
every transaction lookup does) and serialized; and a `make_response` round (parse an INVITE, build
and serialize a 100, a 180 and a 200, as a UAS does). Baseline: the INVITE through
`email.parser.BytesHeaderParser` (the stdlib's RFC 5322 header parser, which SIP's syntax borrows
from) and back with `bytes(msg)`: what one gets without a SIP parser. Each round takes the next
of VARIANTS calls, which differ in tags, branch and Call-ID. Prints messages per second for each
figure, then the ratio Callplane INVITE / baseline last.
Run: `.venv/bin/python bench/sip_parse.py [N]`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from email.parser import BytesHeaderParser
from email.policy import compat32

from callplane.core.sip.message import Request, make_response, parse

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
OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;received=192.0.2.1;rport=5060\r\n"
    b'From: "Alice" <sip:1001@pbx.example.com>;tag=1928301774\r\n'
    b"To: <sip:1002@pbx.example.com>;tag=a6c85cf\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.10\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:1002@192.0.2.20:5060>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER, NOTIFY\r\n"
    b"Supported: replaces, timer\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)
BYE = (
    b"BYE sip:1001@192.0.2.10:5060;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKnashds10;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:1002@pbx.example.com>;tag=a6c85cf\r\n"
    b'To: "Alice" <sip:1001@pbx.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@192.0.2.10\r\n"
    b"CSeq: 231 BYE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


VARIANTS = 1_000  # distinct calls cycled through, so per-call values (tags, branch, Call-ID) vary
# as under load while URIs repeat, as they do between the calls of one trunk or phone
PER_CALL = (b"1928301774", b"a6c85cf", b"776asdhds", b"nashds8", b"nashds10", b"a84b4c76e66710")


def variants(data: bytes) -> list[bytes]:
    """`data` as sent in VARIANTS different calls: each per-call value gets a call number."""
    out = []
    for call in range(VARIANTS):
        message = data
        for value in PER_CALL:
            message = message.replace(value, value + b"x%d" % call)
        out.append(message)
    return out


def callplane_round(data: bytes) -> bytes:
    message = parse(data)
    _ = message.via[0].branch  # what every transaction lookup reads
    return bytes(message)


def make_response_round(data: bytes) -> bytes:
    request = parse(data)
    assert isinstance(request, Request)
    _ = request.via[0].branch
    out = bytes(make_response(request, 100))
    out += bytes(make_response(request, 180, to_tag="a6c85cf"))
    return out + bytes(make_response(request, 200, to_tag="a6c85cf", body=SDP))


def baseline_round(data: bytes) -> bytes:
    head, _, body = data.partition(b"\r\n\r\n")
    start, _, rest = head.partition(b"\r\n")
    message = BytesHeaderParser(policy=compat32).parsebytes(rest + b"\r\n\r\n")
    message.get("Via")
    return start + b"\r\n" + message.as_bytes() + body


def rate(round_trip: Callable[[bytes], bytes], data: bytes, rounds: int) -> float:
    calls = variants(data)
    for message in calls:
        round_trip(message)
    begin = time.perf_counter()
    for i in range(rounds):
        round_trip(calls[i % VARIANTS])
    return rounds / (time.perf_counter() - begin)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ROUNDS
    ok = rate(callplane_round, OK, rounds)
    bye = rate(callplane_round, BYE, rounds)
    responses = rate(make_response_round, INVITE, rounds)
    ours = rate(callplane_round, INVITE, rounds)
    base = rate(baseline_round, INVITE, rounds)
    print(f"callplane 200 OK parse+serialize: {ok:,.0f} msgs/s")
    print(f"callplane BYE parse+serialize: {bye:,.0f} msgs/s")
    print(f"callplane INVITE parse + make_response 100/180/200: {responses:,.0f} rounds/s")
    print(f"callplane INVITE parse+serialize: {ours:,.0f} msgs/s")
    print(f"baseline email.parser.BytesHeaderParser INVITE parse+serialize: {base:,.0f} msgs/s")
    print(f"ratio callplane/baseline: {ours / base:.2f}")


if __name__ == "__main__":
    main()
