"""SIP dialogs (RFC 3261 §12): both sides of a call build, check and route in-dialog requests."""

from __future__ import annotations

import pytest

from callplane.core.sip.address import Address
from callplane.core.sip.dialog import (
    Dialog,
    DialogState,
    ack_for_non2xx,
    cancel_for,
    dialog_as_uac,
    dialog_as_uas,
    new_branch,
    new_tag,
)
from callplane.core.sip.errors import LocalProtocolError, RemoteProtocolError
from callplane.core.sip.message import Request, Response, make_response, parse
from callplane.core.sip.transaction import (
    Action,
    CancelTimer,
    RequestReceived,
    ResponseReceived,
    Send,
    StartTimer,
    TransactionLayer,
)

ALICE = Address("UDP", "10.0.0.1", 5060)
BOB = Address("UDP", "10.0.0.2", 5060)
PROXY_RR = "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"


def parse_request(text: str) -> Request:
    message = parse(text.encode())
    assert isinstance(message, Request)
    return message


def parse_response(text: str) -> Response:
    message = parse(text.encode())
    assert isinstance(message, Response)
    return message


def invite(*, record_route: str | None = PROXY_RR, seq: int = 1) -> Request:
    rr = f"Record-Route: {record_route}\r\n" if record_route else ""
    return parse_request(
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKinv1\r\n"
        "Max-Forwards: 68\r\n"
        "Route: <sip:p1.example.com;lr>\r\n"
        f"{rr}"
        'From: "Alice" <sip:alice@example.com>;tag=a1\r\n'
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: call-7@10.0.0.1\r\n"
        f"CSeq: {seq} INVITE\r\n"
        "Contact: <sip:alice@10.0.0.1:5060>\r\n"
        "Content-Length: 0\r\n\r\n"
    )


def ok(request: Request, status: int = 200, contact: str = "<sip:bob@10.0.0.2:5060>") -> Response:
    return make_response(request, status, to_tag="b1", headers=[("Contact", contact)])


def uac_dialog() -> tuple[Request, Response, Dialog]:
    req = invite()
    response = ok(req)
    response.headers.add("Record-Route", PROXY_RR)
    return req, response, dialog_as_uac(req, response)


def test_uac_dialog_takes_identity_target_and_reversed_record_route() -> None:
    _, _, dialog = uac_dialog()
    assert dialog.id == ("call-7@10.0.0.1", "a1", "b1")
    assert str(dialog.remote_target) == "sip:bob@10.0.0.2:5060"
    assert dialog.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert dialog.local_seq == 1 and dialog.remote_seq is None
    assert dialog.state is DialogState.CONFIRMED
    assert not dialog.secure


def test_uas_dialog_takes_record_route_in_order_and_remote_cseq() -> None:
    req = invite()
    dialog = dialog_as_uas(req, ok(req))
    assert dialog.id == ("call-7@10.0.0.1", "b1", "a1")
    assert str(dialog.remote_target) == "sip:alice@10.0.0.1:5060"
    assert dialog.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert dialog.remote_seq == 1
    assert dialog.remote_uri.display == "Alice"


def test_provisional_with_tag_makes_early_dialog_confirmed_by_2xx() -> None:
    req = invite(record_route=None)
    ringing = ok(req, 180, contact="<sip:bob@10.0.0.9>")
    dialog = dialog_as_uac(req, ringing)
    assert dialog.state is DialogState.EARLY
    assert str(dialog.remote_target) == "sip:bob@10.0.0.9"
    final = ok(req, 200)
    final.headers.add("Record-Route", "<sip:p9.example.com;lr>")
    dialog.update_from_response(final)
    assert dialog.state.value == "confirmed"
    assert str(dialog.remote_target) == "sip:bob@10.0.0.2:5060"
    assert dialog.route_set == ["<sip:p9.example.com;lr>"]  # recomputed from the 2xx


def test_non_2xx_final_ends_an_early_dialog() -> None:
    req = invite()
    dialog = dialog_as_uac(req, ok(req, 180))
    dialog.update_from_response(make_response(req, 486, to_tag="b1"))
    assert dialog.state is DialogState.TERMINATED


def test_response_from_another_fork_is_refused() -> None:
    req = invite()
    dialog = dialog_as_uac(req, ok(req, 180))
    with pytest.raises(LocalProtocolError, match="another dialog"):
        dialog.update_from_response(make_response(req, 200, to_tag="other"))


def test_no_dialog_without_tags_contact_or_from_a_final_error() -> None:
    req = invite()
    with pytest.raises(LocalProtocolError):
        dialog_as_uac(req, make_response(req, 486, to_tag="b1"))
    with pytest.raises(RemoteProtocolError, match="Contact"):
        dialog_as_uac(req, make_response(req, 200, to_tag="b1"))
    with pytest.raises(LocalProtocolError, match="To tag"):
        dialog_as_uas(req, make_response(req, 200))


def test_bye_in_dialog_routes_through_loose_route_set_with_next_cseq() -> None:
    _, _, dialog = uac_dialog()
    via = f"SIP/2.0/UDP 10.0.0.1:5060;branch={new_branch()}"
    bye = dialog.new_request("BYE", via=via, headers=[("Reason", "SIP;cause=16")])
    reparsed = parse(bytes(bye))
    assert isinstance(reparsed, Request)
    assert reparsed.method == "BYE"
    assert reparsed.uri == "sip:bob@10.0.0.2:5060"
    assert reparsed.headers.values("Route") == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
    ]
    assert reparsed.cseq.seq == 2 and reparsed.cseq.method == "BYE"
    assert reparsed.from_.tag == "a1" and reparsed.to.tag == "b1"
    assert reparsed.call_id == "call-7@10.0.0.1"
    assert reparsed.max_forwards == 70
    assert reparsed.headers.get("Reason") == "SIP;cause=16"
    assert dialog.new_request("INFO", via=via).cseq.seq == 3


def test_strict_router_becomes_request_uri_and_target_goes_last() -> None:
    _, _, dialog = uac_dialog()
    dialog.route_set = ["<sip:strict.example.com;transport=udp>", "<sip:p1.example.com;lr>"]
    request = dialog.new_request("BYE", via="SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKs1")
    assert request.uri == "sip:strict.example.com"
    assert request.headers.values("Route") == [
        "<sip:p1.example.com;lr>",
        "<sip:bob@10.0.0.2:5060>",
    ]


def test_ack_for_2xx_reuses_invite_cseq_number_with_a_new_branch() -> None:
    req, response, dialog = uac_dialog()
    branch = new_branch()
    ack = dialog.ack_for(req, response, via=f"SIP/2.0/UDP 10.0.0.1:5060;branch={branch}")
    assert ack.method == "ACK" and ack.cseq.seq == 1 and ack.cseq.method == "ACK"
    assert ack.via[0].branch == branch != "z9hG4bKinv1"
    assert ack.uri == "sip:bob@10.0.0.2:5060"
    assert ack.to.tag == "b1"
    assert dialog.local_seq == 1  # the ACK takes no new number


def test_ack_and_cancel_are_not_built_by_new_request() -> None:
    _, _, dialog = uac_dialog()
    for method in ("ACK", "CANCEL"):
        with pytest.raises(LocalProtocolError):
            dialog.new_request(method, via="SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx")


def test_out_of_order_cseq_is_answered_500_and_ack_is_exempt() -> None:
    req = invite()
    dialog = dialog_as_uas(req, ok(req))
    stale = invite(seq=1)
    with pytest.raises(RemoteProtocolError) as raised:
        dialog.receive_request(stale)
    assert raised.value.status == 500 and raised.value.reason == "CSeq out of order"
    ack = parse_request(bytes(cancel_for(req)).decode().replace("CANCEL", "ACK"))
    dialog.receive_request(ack)
    assert dialog.remote_seq == 1


def test_reinvite_refreshes_target_and_bye_ends_dialog() -> None:
    req = invite()
    dialog = dialog_as_uas(req, ok(req))
    reinvite = parse_request(
        bytes(req).decode().replace("CSeq: 1", "CSeq: 2").replace("10.0.0.1:5060>", "10.0.0.5>")
    )
    dialog.receive_request(reinvite)
    assert dialog.remote_seq == 2
    assert str(dialog.remote_target) == "sip:alice@10.0.0.5"
    bye = parse_request(bytes(req).decode().replace("INVITE", "BYE").replace("CSeq: 1", "CSeq: 3"))
    dialog.receive_request(bye)
    assert dialog.state is DialogState.TERMINATED
    with pytest.raises(LocalProtocolError, match="terminated"):
        dialog.new_request("INFO", via="SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKq")


def test_481_to_an_in_dialog_request_ends_the_dialog() -> None:
    _, _, dialog = uac_dialog()
    info = dialog.new_request("INFO", via="SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKi")
    dialog.update_from_response(make_response(info, 481))
    assert dialog.state is DialogState.TERMINATED


def test_cancel_copies_what_rfc_3261_section_9_1_requires() -> None:
    req = invite()
    cancel = cancel_for(req)
    assert cancel.method == "CANCEL" and cancel.uri == req.uri
    assert cancel.cseq.seq == 1 and cancel.cseq.method == "CANCEL"
    assert [v.branch for v in cancel.via] == ["z9hG4bKp2"]  # top Via only
    assert cancel.headers.get_all("Route") == req.headers.get_all("Route")
    assert cancel.call_id == req.call_id
    assert cancel.from_ == req.from_ and cancel.to == req.to


def test_ack_for_non_2xx_takes_invite_branch_and_response_to() -> None:
    req = invite()
    busy = make_response(req, 486, to_tag="b1")
    ack = ack_for_non2xx(req, busy)
    assert ack.method == "ACK" and ack.uri == req.uri
    assert [v.branch for v in ack.via] == ["z9hG4bKp2"]
    assert ack.to.tag == "b1" and ack.cseq.seq == 1 and ack.cseq.method == "ACK"


def test_branches_and_tags_are_fresh() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100 and all(b.startswith("z9hG4bK") for b in branches)
    assert len({new_tag() for _ in range(100)}) == 100


def test_call_set_up_and_hung_up_by_both_dialogs_over_transactions() -> None:
    """Alice calls Bob: both build their dialog, Alice ACKs, Bob hangs up with a BYE."""
    alice, bob = TransactionLayer(), TransactionLayer()
    offer = parse_request(
        "INVITE sip:bob@10.0.0.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.1:5060;branch={new_branch()}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@10.0.0.1>;tag={new_tag()}\r\n"
        "To: <sip:bob@10.0.0.2>\r\n"
        "Call-ID: e2e@10.0.0.1\r\n"
        "CSeq: 10 INVITE\r\n"
        "Contact: <sip:alice@10.0.0.1:5060>\r\n\r\n"
    )

    def deliver(actions: list[Action], to: TransactionLayer, source: Address) -> list[Action]:
        """Carry the Sends to `to`; what its TU is told comes back (timers left out)."""
        out: list[Action] = []
        for action in actions:
            if isinstance(action, Send):
                out += to.receive(parse(bytes(action.message)), source, 1.0)
        return [a for a in out if not isinstance(a, StartTimer | CancelTimer)]

    _, sent = alice.send_request(offer, BOB, 0.0)
    (got_invite,) = deliver(sent, bob, ALICE)
    assert isinstance(got_invite, RequestReceived) and got_invite.tx is not None
    answer = make_response(
        got_invite.request, 200, to_tag=new_tag(), headers=[("Contact", "<sip:bob@10.0.0.2>")]
    )
    bob_dialog = dialog_as_uas(got_invite.request, answer)
    (got_ok,) = deliver(bob.send_response(got_invite.tx, answer, 1.0), alice, BOB)
    assert isinstance(got_ok, ResponseReceived)
    alice_dialog = dialog_as_uac(offer, got_ok.response)
    assert alice_dialog.id == (bob_dialog.call_id, bob_dialog.remote_tag, bob_dialog.local_tag)

    ack = alice_dialog.ack_for(
        offer, got_ok.response, via=f"SIP/2.0/UDP 10.0.0.1;branch={new_branch()}"
    )
    (got_ack,) = deliver(alice.send_ack(ack, BOB), bob, ALICE)
    assert isinstance(got_ack, RequestReceived) and got_ack.tx is None
    bob_dialog.receive_request(got_ack.request)

    bye = bob_dialog.new_request("BYE", via=f"SIP/2.0/UDP 10.0.0.2;branch={new_branch()}")
    assert bye.uri == "sip:alice@10.0.0.1:5060" and bye.cseq.seq == 1
    _, sent = bob.send_request(bye, ALICE, 2.0)
    (got_bye,) = deliver(sent, alice, BOB)
    assert isinstance(got_bye, RequestReceived)
    alice_dialog.receive_request(got_bye.request)
    assert alice_dialog.state is DialogState.TERMINATED
