"""RFC 4475 (SIP torture test messages) against the message layer.

Each file of `../shared/sip-conformance/rfc4475/` has one row below: the RFC section, whether
`parse` accepts it, and for a refusal a word its reason must hold and the status to answer. Where
the RFC lets an element accept a message and leaves the decision to a later layer, the row says
which layer and the RFC's words.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from callplane.core.sip.errors import SipParseError
from callplane.core.sip.message import Request, Response, parse

RFC4475_DIR = Path(__file__).parents[2].parent / "shared" / "sip-conformance" / "rfc4475"


@dataclass(frozen=True)
class Case:
    section: str
    accepted: bool
    keyword: str = ""
    status: int = 400
    note: str = ""


CASES: dict[str, Case] = {
    # §3.1.1: valid messages; they must parse.
    "wsinv": Case("3.1.1.1", True),
    "intmeth": Case("3.1.1.2", True),
    "esc01": Case("3.1.1.3", True),
    "escnull": Case("3.1.1.4", True),
    "esc02": Case("3.1.1.5", True, note="RE%47IST%45R is an unknown method: the UAS answers 501"),
    "lwsdisp": Case("3.1.1.6", True),
    "longreq": Case("3.1.1.7", True),
    "dblreq": Case("3.1.1.8", True, note="UDP: only the REGISTER (Content-Length 0) is read"),
    "semiuri": Case("3.1.1.9", True),
    "transports": Case("3.1.1.10", True),
    "mpart01": Case("3.1.1.11", True),
    "unreason": Case("3.1.1.12", True),
    "noreason": Case("3.1.1.13", True),
    # §3.1.2: invalid messages; refused with a reason naming the fault.
    "badinv01": Case("3.1.2.1", False, "bad Via header"),
    "clerr": Case("3.1.2.2", False, "Content-Length 9999 larger than body"),
    "ncl": Case("3.1.2.3", False, "invalid Content-Length"),
    "scalar02": Case("3.1.2.4", False, "invalid CSeq"),
    "scalarlg": Case("3.1.2.5", False, "invalid CSeq"),
    "quotbal": Case("3.1.2.6", False, "unterminated quoted string"),
    "ltgtruri": Case("3.1.2.7", False, "bad Request-URI"),
    "lwsruri": Case("3.1.2.8", False, "bad request line"),
    "lwsstart": Case("3.1.2.9", False, "bad request line"),
    "trws": Case("3.1.2.10", False, "bad request line"),
    "escruri": Case("3.1.2.11", False, "Request-URI must not contain headers"),
    "baddate": Case(
        "3.1.2.12",
        True,
        note="'An element could choose to be liberal in what it accepts and ignore the Date "
        "header field': Callplane never reads Date",
    ),
    "regbadct": Case("3.1.2.13", False, "enclosed in <>"),
    "badaspec": Case("3.1.2.14", False, "whitespace inside <>"),
    "baddn": Case("3.1.2.15", False, "bad display name"),
    "badvers": Case("3.1.2.16", False, "SIP version 7.0 not supported", 505),
    "mismatch01": Case("3.1.2.17", False, "does not match request method"),
    "mismatch02": Case("3.1.2.18", False, "does not match request method"),
    "bigcode": Case("3.1.2.19", False, "status code"),
    # §3.2: transaction layer.
    "badbranch": Case(
        "3.2.1",
        True,
        note="'A parser must not break when receiving this message': the transaction layer "
        "treats the bare z9hG4bK branch as an RFC 2543 transaction id",
    ),
    # §3.3: application layer.
    "insuf": Case("3.3.1", False, "missing To"),
    "unkscm": Case("3.3.2", False, "unsupported URI scheme", 416),
    "novelsc": Case("3.3.3", False, "unsupported URI scheme", 416),
    "unksm2": Case(
        "3.3.4",
        True,
        note="'parsers must not fail when receiving it': From/To/Contact URIs of other schemes "
        "raise 416 only when the registrar reads them",
    ),
    "bext01": Case("3.3.5", True, note="the UAS answers 420 for the unknown Require"),
    "invut": Case("3.3.6", True, note="the UAS answers 415 for the unknown body type"),
    "regaut01": Case("3.3.7", True, note="the registrar challenges the unknown auth scheme"),
    "multi01": Case("3.3.8", False, "multiple CSeq headers"),
    "mcl01": Case("3.3.9", False, "multiple Content-Length headers"),
    "bcast": Case("3.3.10", True, note="the transport layer must not send to 255.255.255.255"),
    "zeromf": Case("3.3.11", True, note="Max-Forwards 0 is for a proxy (483); a UAS answers"),
    "cparam01": Case("3.3.12", True),
    "cparam02": Case("3.3.13", True),
    "regescrt": Case("3.3.14", True, note="the registrar must not store the escaped Route"),
    "sdp01": Case("3.3.15", True, note="the UAS answers 406 or processes the offer"),
    # §3.4: backward compatibility.
    "inv2543": Case("3.4.1", True, note="RFC 2543 message: no Max-Forwards, no branch"),
    # Not from RFC 4475: the conformance directory's extra sample has no SIP version.
    "test": Case("extra", False, "bad request line"),
}

needs_data = pytest.mark.skipif(
    not RFC4475_DIR.is_dir(), reason=f"RFC 4475 messages not found in {RFC4475_DIR}"
)


def load(name: str) -> bytes:
    return (RFC4475_DIR / f"{name}.dat").read_bytes()


@needs_data
def test_every_file_has_a_row() -> None:
    assert {p.stem for p in RFC4475_DIR.glob("*.dat")} == set(CASES)


@needs_data
@pytest.mark.parametrize("name", sorted(CASES))
def test_outcome_matches_the_rfc(name: str) -> None:
    case = CASES[name]
    if case.accepted:
        message = parse(load(name))
        assert parse(bytes(message)) == message
    else:
        with pytest.raises(SipParseError) as info:
            parse(load(name))
        assert case.keyword in info.value.reason
        assert info.value.status == case.status


def request(name: str) -> Request:
    message = parse(load(name))
    assert isinstance(message, Request)
    return message


@needs_data
def test_wsinv_whitespace_and_folding() -> None:
    req = request("wsinv")
    assert req.to.tag == "1918181833n" and str(req.to.uri) == "sip:vivekg@chair-dnrc.example.com"
    assert req.from_.display == 'J Rosenberg \\"' and req.from_.tag == "98asjd8"
    assert req.cseq.seq == 9 and req.max_forwards == 68
    assert [(v.transport, v.host, v.branch) for v in req.via] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert req.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert req.headers.get("Subject") == ""
    contacts = req.contacts
    assert contacts != "*"
    assert contacts[0].display == 'Quoted string ""' and contacts[0].param("q") == "0.33"
    assert contacts[0].has_param("secondparam") and contacts[0].param("newparam") == "newvalue"
    assert len(req.body) == 150


@needs_data
def test_intmeth_unusual_method_and_uri() -> None:
    req = request("intmeth")
    assert req.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert req.request_uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert req.request_uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert req.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert req.from_.tag == "_token~1'+`*%!-."


@needs_data
def test_esc01_escaped_user_parts() -> None:
    req = request("esc01")
    assert req.request_uri.user_unescaped == "sips:user@example.com"
    assert req.to.uri.user_unescaped == "user"
    assert req.from_.uri.user_unescaped == "I have spaces"
    contacts = req.contacts
    assert contacts != "*"
    assert contacts[0].uri.user_unescaped == "caller" and contacts[0].uri.has_param("lr")


@needs_data
def test_escnull_and_esc02() -> None:
    assert request("escnull").to.uri.user_unescaped == "null-\x00-null"
    req = request("esc02")
    assert req.method == "RE%47IST%45R" and req.from_.display == "%Z%45"
    assert len(req.headers.values("Contact")) == 2 and req.headers.get("C%6Fntact") is not None


@needs_data
def test_longreq_many_vias_and_long_values() -> None:
    req = request("longreq")
    assert len(req.via) == 34 and req.via[-1].received == "192.0.2.5"
    assert req.to.uri.port == 6000 and req.to.uri.has_param(
        "verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongParameterNameWithNoValue"
    )


@needs_data
def test_dblreq_keeps_only_the_first_request() -> None:
    req = request("dblreq")
    assert req.method == "REGISTER" and req.body == b"" and req.call_id.startswith("dblreq.0ha0")


@needs_data
def test_semiuri_transports_and_lwsdisp() -> None:
    assert request("semiuri").request_uri.user_unescaped == "user;par=u@example.net"
    assert [v.transport for v in request("transports").via] == [
        "UDP",
        "SCTP",
        "TLS",
        "UNKNOWN",
        "TCP",
    ]
    assert request("lwsdisp").from_.display == "caller"


@needs_data
def test_mpart01_binary_body_is_kept_exactly() -> None:
    data = load("mpart01")
    req = request("mpart01")
    assert len(req.body) == 553 and data.endswith(req.body)


@needs_data
def test_unreason_and_noreason_responses() -> None:
    un = parse(load("unreason"))
    assert isinstance(un, Response) and un.status == 200 and un.reason.startswith("= 2**3 * 5**2 ")
    no = parse(load("noreason"))
    assert isinstance(no, Response) and (no.status, no.reason) == (100, "")


@needs_data
def test_unksm2_other_schemes_fail_only_when_read() -> None:
    req = request("unksm2")
    with pytest.raises(SipParseError) as info:
        _ = req.to
    assert info.value.status == 416 and "isbn" in info.value.reason


@needs_data
def test_cparam_contact_params_belong_to_header_or_uri() -> None:
    bare = request("cparam01").contacts
    inner = request("cparam02").contacts
    assert bare != "*" and inner != "*"
    assert bare[0].has_param("unknownparam") and not bare[0].uri.has_param("unknownparam")
    assert inner[0].uri.has_param("unknownparam") and not inner[0].has_param("unknownparam")


@needs_data
def test_regescrt_contact_uri_keeps_its_escaped_header() -> None:
    contacts = request("regescrt").contacts
    assert contacts != "*" and contacts[0].uri.headers == (("Route", "%3Csip:sip.example.com%3E"),)


@needs_data
def test_inv2543_has_no_branch_and_body_runs_to_end() -> None:
    req = request("inv2543")
    assert req.via[0].branch is None and req.max_forwards is None and req.body.startswith(b"v=0")
