"""Property tests: generated messages round-trip, and no input crashes the parsers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from callplane.core.sip.errors import SipParseError
from callplane.core.sip.headers import parse_name_addr, parse_via
from callplane.core.sip.message import Request, Response, StreamParser, parse
from callplane.core.sip.uri import SipUri, parse_uri

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
methods = st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER"]) | tokens
labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
hosts = (
    st.lists(labels, min_size=1, max_size=3).map(".".join)
    | st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
    | st.sampled_from(["[2001:db8::1]", "[::1]", "[fe80::a:b:c]"])
)
ports = st.none() | st.integers(1, 65535)
params = st.lists(st.tuples(labels, st.none() | labels), max_size=3).map(tuple)
users = st.none() | st.text(
    "abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,;?/", min_size=1, max_size=10
)
uris = st.builds(
    SipUri,
    scheme=st.sampled_from(["sip", "sips"]),
    user=users,
    password=st.none(),
    host=hosts,
    port=ports,
    params=params,
    headers=st.lists(st.tuples(labels, labels), max_size=2).map(tuple),
)
# header values: printable text (UTF-8 included), no CR/LF, not starting/ending with blanks
values = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=30).map(
    lambda s: s.strip(" \t\xa0\u3000\u2000\u2028")
)
extra_names = st.sampled_from(
    ["Subject", "X-Custom", "User-Agent", "Allow", "Supported"]
) | tokens.filter(
    lambda t: (
        t.lower()
        not in {
            "call-id",
            "cseq",
            "from",
            "to",
            "max-forwards",
            "content-length",
            "via",
            "contact",
            "i",
            "l",
            "f",
            "t",
            "v",
            "m",
        }
    )
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    method = draw(methods)
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS"]))
    display = draw(st.text("abc XYZ", max_size=8))
    lines = [
        f"Via: SIP/2.0/{transport} {draw(hosts)};branch=z9hG4bK{draw(labels)}",
        f'From: "{display}" <{draw(uris).with_(headers=())}>;tag={draw(labels)}',
        f"To: <{draw(uris).with_(headers=())}>",
        f"Call-ID: {draw(labels)}@{draw(hosts)}",
        f"CSeq: {draw(st.integers(0, 2**31 - 1))} {method}",
        f"Max-Forwards: {draw(st.integers(0, 255))}",
    ]
    for name, value in draw(st.lists(st.tuples(extra_names, values), max_size=5)):
        lines.append(f"{name}: {value}")
    if draw(st.booleans()):
        lines = list(draw(st.permutations(lines)))
    body = draw(st.binary(max_size=64))
    head = "\r\n".join([f"{method} {draw(uris).with_(headers=())} SIP/2.0", *lines])
    return head.encode() + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


@given(messages())
def test_generated_messages_round_trip(data: bytes) -> None:
    message = parse(data)
    assert parse(bytes(message)) == message


@given(uris)
def test_uris_round_trip(uri: SipUri) -> None:
    assert parse_uri(str(uri)) == uri


@given(st.sampled_from(["UDP", "TCP", "WS"]), hosts, ports, params)
def test_vias_round_trip(
    transport: str, host: str, port: int | None, ps: tuple[tuple[str, str | None], ...]
) -> None:
    via = parse_via(f"SIP/2.0/{transport} {host}{'' if port is None else f':{port}'}")
    via = via.with_params(**dict(ps))
    assert parse_via(str(via)) == via


@given(
    st.none() | st.text(max_size=20).filter(lambda s: "\r" not in s and "\n" not in s), uris, params
)
def test_name_addrs_round_trip(
    display: str | None, uri: SipUri, ps: tuple[tuple[str, str | None], ...]
) -> None:
    addr = parse_name_addr(f"<{uri}>").with_params(**dict(ps))
    if display is not None:
        addr = parse_name_addr(
            f'"{display.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}" <{uri}>'
        )
    assert parse_name_addr(str(addr)) == addr


def only_parse_errors(data: bytes) -> None:
    try:
        message = parse(data)
    except SipParseError:
        return
    assert parse(bytes(message)) == message


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_raise_parse_errors(data: bytes) -> None:
    only_parse_errors(data)


@settings(max_examples=300)
@given(messages(), st.data())
def test_mutated_messages_only_raise_parse_errors(data: bytes, draw: st.DataObject) -> None:
    for _ in range(draw.draw(st.integers(1, 4))):
        at = draw.draw(st.integers(0, len(data)))
        cut = draw.draw(st.integers(0, 4))
        junk = draw.draw(
            st.binary(max_size=4)
            | st.sampled_from([b"\r\n", b" ", b'"', b"<", b";", b",", b":", b"%", b"["])
        )
        data = data[:at] + junk + data[at + cut :]
    only_parse_errors(data)


@settings(max_examples=200)
@given(st.lists(messages() | st.binary(max_size=80), max_size=4), st.integers(1, 50))
def test_stream_parser_only_raises_parse_errors(chunks: list[bytes], size: int) -> None:
    stream = b"".join(chunks)
    parser = StreamParser()
    try:
        for i in range(0, len(stream), size):
            for item in parser.feed(stream[i : i + size]):
                assert isinstance(item, SipParseError | Request | Response)
    except SipParseError:
        pass


@given(st.lists(messages(), min_size=1, max_size=3), st.integers(1, 40))
def test_stream_parser_frames_whatever_the_chunking(msgs: list[bytes], size: int) -> None:
    stream = b"\r\n\r\n".join(msgs)
    parser = StreamParser()
    out: list[object] = []
    for i in range(0, len(stream), size):
        out += parser.feed(stream[i : i + size])
    assert out == [parse(m) for m in msgs]
