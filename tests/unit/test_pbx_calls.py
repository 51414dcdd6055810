"""Whole calls through the PBX's call logic, phones speaking real SIP bytes over a fake network.

The PBX runs on a real transaction layer and a fake clock (`pbx_network.Network`); the phones are
scripted. Each test asserts what the people on the call would notice: whose phone rang, what the
caller heard back, and what the CDR says.
"""

from __future__ import annotations

import pytest
from pbx_network import (
    PROVIDER_HOST,
    SDP_ANSWER,
    SDP_OFFER,
    Network,
    Phone,
    PhoneDialog,
    directory,
)

from callplane.core.sip.dialog import cancel_for, new_tag
from callplane.core.sip.headers import Headers
from callplane.core.sip.message import Request, Response

TALK_S = 42  # how long the answered calls last


@pytest.fixture
def net() -> Network:
    return Network(directory())


@pytest.fixture
def alice(net: Network) -> Phone:
    phone = Phone(net, "1001", "10.0.0.11")
    assert phone.register().status == 200
    return phone


@pytest.fixture
def bob(net: Network) -> Phone:
    phone = Phone(net, "1002", "10.0.0.12")
    assert phone.register().status == 200
    return phone


@pytest.fixture
def provider(net: Network) -> Phone:
    return Phone(net, "provider", PROVIDER_HOST, domain=PROVIDER_HOST)


# --- extension to extension ----------------------------------------------------------------------


def test_answered_call_hung_up_by_caller_bills_the_talk_time(
    net: Network, alice: Phone, bob: Phone
) -> None:
    call = alice.call("1002")
    ringing = bob.incoming()
    assert ringing.invite.body == SDP_OFFER
    assert ringing.invite.from_.uri.user == "1001"
    assert ringing.invite.from_.display == "Alice"
    bob.answer(ringing)
    assert alice.statuses(call.invite) == [100, 180, 200]
    ok = alice.final(call.invite)
    assert ok is not None and ok.body == SDP_ANSWER
    dialog = alice.ack(call)
    assert bob.requests("ACK"), "the callee's 200 was never ACKed"

    net.advance(TALK_S)
    bye = alice.in_dialog(dialog, "BYE")

    assert alice.statuses(bye) == [200]
    assert len(bob.requests("BYE")) >= 1
    [cdr] = net.cdrs
    assert (cdr.from_number, cdr.to_number, cdr.direction) == ("1001", "1002", "internal")
    assert cdr.call_id == call.invite.call_id
    assert cdr.billable_s == TALK_S
    assert (cdr.hangup_by, cdr.hangup_cause, cdr.trunk_id) == ("caller", "normal_clearing", None)
    assert len(net.pbx.b2bua) == 0


def test_callee_hanging_up_ends_the_callers_dialog_and_is_billed(
    net: Network, alice: Phone, bob: Phone
) -> None:
    call = alice.call("1002")
    ringing = bob.incoming()
    net.advance(5)
    callee = bob.answer(ringing)
    alice.ack(call)
    net.advance(TALK_S)

    bye = bob.in_dialog(callee, "BYE")

    assert bob.statuses(bye) == [200]
    [to_caller] = alice.requests("BYE")
    assert to_caller.call_id == call.invite.call_id
    [cdr] = net.cdrs
    assert cdr.billable_s == TALK_S
    assert cdr.answered_at is not None and cdr.answered_at - cdr.started_at == 5
    assert (cdr.hangup_by, cdr.hangup_cause) == ("callee", "normal_clearing")


def test_busy_callee_gives_the_caller_486(net: Network, alice: Phone, bob: Phone) -> None:
    call = alice.call("1002")
    bob.respond(bob.incoming(), 486)

    final = alice.final(call.invite)
    assert final is not None and final.status == 486
    assert bob.requests("ACK"), "the 486 was not ACKed"
    [cdr] = net.cdrs
    assert (cdr.hangup_cause, cdr.hangup_status, cdr.billable_s) == ("busy", 486, 0)
    assert cdr.answered_at is None


def test_caller_cancelling_while_ringing_stops_the_callee_ringing(
    net: Network, alice: Phone, bob: Phone
) -> None:
    call = alice.call("1002")
    bob.respond(bob.incoming(), 180)

    cancel = cancel_for(call.invite)
    alice.send(cancel)

    assert alice.statuses(cancel) == [200]
    final = alice.final(call.invite)
    assert final is not None and final.status == 487
    assert bob.requests("CANCEL"), "the callee kept ringing"
    [cdr] = net.cdrs
    assert (cdr.hangup_by, cdr.hangup_cause, cdr.billable_s) == ("caller", "cancelled", 0)


def test_no_answer_within_ring_time_gives_480_and_stops_the_ringing(
    net: Network, alice: Phone, bob: Phone
) -> None:
    call = alice.call("1002")
    bob.respond(bob.incoming(), 180)

    net.advance(19)
    assert alice.final(call.invite) is None
    net.advance(1)  # 1002 rings for 20 s

    final = alice.final(call.invite)
    assert final is not None and final.status == 480
    assert bob.requests("CANCEL")
    [cdr] = net.cdrs
    assert (cdr.hangup_by, cdr.hangup_cause, cdr.hangup_status) == ("system", "no_answer", 480)
    assert cdr.ended_at - cdr.started_at == 20


def test_unknown_extension_gets_404_and_rings_nobody(
    net: Network, alice: Phone, bob: Phone
) -> None:
    call = alice.call("1099")

    final = alice.final(call.invite)
    assert final is not None and final.status == 404
    assert not bob.requests("INVITE")
    [cdr] = net.cdrs
    assert (cdr.from_number, cdr.to_number, cdr.direction) == ("1001", "1099", "internal")
    assert (cdr.hangup_cause, cdr.hangup_status, cdr.answered_at) == ("not_found", 404, None)


def test_extension_without_registered_phone_gets_480(net: Network, alice: Phone) -> None:
    call = alice.call("1003")

    final = alice.final(call.invite)
    assert final is not None and final.status == 480
    [cdr] = net.cdrs
    assert (cdr.to_number, cdr.hangup_cause, cdr.billable_s) == ("1003", "unavailable", 0)


def test_call_without_credentials_is_challenged_and_rings_nobody(
    net: Network, alice: Phone, bob: Phone
) -> None:
    call = alice.call("1002", authenticate=False)

    final = alice.final(call.invite)
    assert final is not None and final.status == 407
    assert final.headers.get_all("Proxy-Authenticate")
    assert not bob.requests("INVITE")
    assert not net.cdrs  # a challenge is a handshake, not a call


def test_two_phones_ring_and_the_second_is_cancelled_when_the_first_answers(
    net: Network, alice: Phone
) -> None:
    desk = Phone(net, "1002", "10.0.0.12")
    mobile = Phone(net, "1002", "10.0.0.13")
    assert desk.register().status == 200
    assert mobile.register().status == 200
    call = alice.call("1002")
    mobile.respond(mobile.incoming(), 180)

    desk.answer(desk.incoming())

    assert alice.statuses(call.invite)[-1] == 200
    assert mobile.requests("CANCEL")
    assert mobile.requests("ACK"), "the mobile's 487 was not ACKed"
    assert not mobile.requests("BYE")
    assert len(net.cdrs) == 0  # the call goes on
    alice.ack(call)
    assert len(net.pbx.b2bua) == 1


def test_a_2xx_crossing_our_cancel_is_acked_and_hung_up(net: Network, alice: Phone) -> None:
    desk = Phone(net, "1002", "10.0.0.12")
    mobile = Phone(net, "1002", "10.0.0.13")
    desk.register()
    mobile.register()
    mobile.answers_cancel = False
    call = alice.call("1002")
    late = mobile.incoming()
    desk.answer(desk.incoming())
    assert mobile.requests("CANCEL")

    mobile.respond(late, 200, body=SDP_ANSWER)  # sent before our CANCEL reached it

    assert [a.call_id for a in mobile.requests("ACK")] == [late.call_id]
    [bye] = mobile.requests("BYE")
    assert bye.call_id == late.call_id
    assert alice.statuses(call.invite).count(200) == 1
    dialog = alice.ack(call)
    assert not desk.requests("BYE"), "the winning phone was hung up"
    net.advance(TALK_S)
    alice.in_dialog(dialog, "BYE")
    [cdr] = net.cdrs
    assert cdr.billable_s == TALK_S


def test_a_2xx_crossing_the_callers_cancel_is_acked_and_hung_up(
    net: Network, alice: Phone, bob: Phone
) -> None:
    bob.answers_cancel = False
    call = alice.call("1002")
    ringing = bob.incoming()
    bob.respond(ringing, 180)
    alice.send(cancel_for(call.invite))

    bob.respond(ringing, 200, body=SDP_ANSWER)

    final = alice.final(call.invite)
    assert final is not None and final.status == 487
    assert bob.requests("ACK") and bob.requests("BYE")
    [cdr] = net.cdrs
    assert (cdr.hangup_cause, cdr.answered_at) == ("cancelled", None)


def test_caller_never_acking_the_200_hangs_up_both_sides(
    net: Network, alice: Phone, bob: Phone
) -> None:
    alice.call("1002")
    bob.answer(bob.incoming())

    net.advance(40)  # RFC 6026 Timer L: 64*T1 without an ACK

    assert bob.requests("BYE")
    [cdr] = net.cdrs
    assert (cdr.hangup_by, cdr.hangup_cause) == ("system", "no_ack")


# --- inside a call -------------------------------------------------------------------------------

NEW_SDP = b"v=0\r\no=x 2 2 IN IP4 10.0.0.99\r\ns=-\r\nc=IN IP4 10.0.0.99\r\nt=0 0\r\n"
NEWER_SDP = b"v=0\r\no=y 3 3 IN IP4 10.0.0.98\r\ns=-\r\nc=IN IP4 10.0.0.98\r\nt=0 0\r\n"


def _answered(alice: Phone, bob: Phone) -> tuple[PhoneDialog, PhoneDialog]:
    call = alice.call("1002")
    callee = bob.answer(bob.incoming())
    return alice.ack(call), callee


def test_reinvite_from_caller_reaches_callee_and_its_answer_comes_back(
    net: Network, alice: Phone, bob: Phone
) -> None:
    caller, callee = _answered(alice, bob)

    reinvite = alice.in_dialog(caller, "INVITE", body=NEW_SDP)
    [relayed] = [r for r in bob.requests("INVITE") if r.to.tag is not None]
    assert relayed.body == NEW_SDP and relayed.to.tag == callee.local_tag
    bob.respond(relayed, 200, body=NEWER_SDP)

    ok = alice.final(reinvite)
    assert ok is not None and ok.status == 200 and ok.body == NEWER_SDP
    assert [a.cseq.seq for a in bob.requests("ACK")] == [1, relayed.cseq.seq]
    alice.ack_in_dialog(caller, reinvite)
    assert len(net.pbx.b2bua) == 1


def test_reinvite_from_callee_reaches_caller(net: Network, alice: Phone, bob: Phone) -> None:
    caller, callee = _answered(alice, bob)

    reinvite = bob.in_dialog(callee, "INVITE", body=NEW_SDP)
    [relayed] = alice.requests("INVITE")
    assert relayed.body == NEW_SDP and relayed.call_id == caller.call_id
    alice.respond(relayed, 200, body=NEWER_SDP)

    ok = bob.final(reinvite)
    assert ok is not None and ok.status == 200 and ok.body == NEWER_SDP
    assert alice.requests("ACK")
    # the dialogs still work afterwards: the caller hangs up
    bye = alice.in_dialog(caller, "BYE")
    assert alice.statuses(bye) == [200]
    assert bob.requests("BYE")


def test_update_and_info_are_relayed_with_their_answers(
    net: Network, alice: Phone, bob: Phone
) -> None:
    caller, _callee = _answered(alice, bob)

    update = alice.in_dialog(caller, "UPDATE", body=NEW_SDP)
    [relayed] = bob.requests("UPDATE")
    bob.respond(relayed, 200, body=NEWER_SDP)
    info = alice.in_dialog(caller, "INFO")
    [relayed_info] = bob.requests("INFO")
    bob.respond(relayed_info, 415)

    ok = alice.final(update)
    assert ok is not None and ok.status == 200 and ok.body == NEWER_SDP
    assert alice.statuses(info)[-1] == 415


def test_late_offer_call_carries_the_callers_answer_in_the_ack(
    net: Network, alice: Phone, bob: Phone
) -> None:
    call = alice.call("1002", body=b"")
    ringing = bob.incoming()
    assert ringing.invite.body == b""
    bob.answer(ringing, body=SDP_ANSWER)  # the callee's 200 carries the offer
    ok = alice.final(call.invite)
    assert ok is not None and ok.body == SDP_ANSWER
    assert not bob.requests("ACK"), "the callee was ACKed before the caller answered"

    alice.ack(call, body=SDP_OFFER)

    [ack] = bob.requests("ACK")
    assert ack.body == SDP_OFFER
    assert ack.headers.get("Content-Type") == "application/sdp"


# --- other requests ------------------------------------------------------------------------------


def _out_of_dialog(phone: Phone, method: str, *, max_forwards: int = 70) -> Request:
    h = Headers()
    h.add("Via", phone.via())
    h.add("Max-Forwards", str(max_forwards))
    h.add("From", f"<{phone.uri()}>;tag={new_tag()}")
    h.add("To", "<sip:1002@acme.example>")
    h.add("Call-ID", f"{new_tag()}@test")
    h.add("CSeq", f"1 {method}")
    request = Request(method, "sip:1002@acme.example", h)
    phone.send(request)
    return request


@pytest.mark.parametrize(
    ("method", "status"),
    [("SUBSCRIBE", 501), ("PUBLISH", 501), ("OPTIONS", 200), ("BYE", 481), ("INFO", 481)],
)
def test_requests_outside_calls_get_the_right_answer(
    net: Network, method: str, status: int
) -> None:
    phone = Phone(net, "1001", "10.0.0.11")

    request = _out_of_dialog(phone, method)

    final = phone.final(request)
    assert final is not None and final.status == status
    if status == 501:
        assert "INVITE" in (final.headers.get("Allow") or "")


def test_invite_with_max_forwards_zero_gets_483(net: Network, alice: Phone, bob: Phone) -> None:
    call = alice.call("1002", max_forwards=0)

    final = alice.final(call.invite)
    assert final is not None and final.status == 483
    assert not bob.requests("INVITE")


def test_callee_leg_gets_max_forwards_decremented(net: Network, alice: Phone, bob: Phone) -> None:
    alice.call("1002", max_forwards=5)

    assert bob.incoming().invite.headers.get("Max-Forwards") == "4"


def test_request_in_an_unknown_dialog_gets_481(net: Network, alice: Phone, bob: Phone) -> None:
    caller, _ = _answered(alice, bob)
    caller.remote_tag = "not-a-tag"

    bye = alice.in_dialog(caller, "BYE")

    assert alice.statuses(bye) == [481]
    assert not bob.requests("BYE")


@pytest.mark.parametrize(
    ("desk_status", "mobile_status", "caller_gets", "cause"),
    [(404, 486, 486, "busy"), (480, 404, 404, "not_found"), (603, None, 603, "rejected")],
)
def test_failures_of_all_phones_are_summed_up_for_the_caller(
    net: Network,
    alice: Phone,
    desk_status: int,
    mobile_status: int | None,
    caller_gets: int,
    cause: str,
) -> None:
    desk = Phone(net, "1002", "10.0.0.12")
    mobile = Phone(net, "1002", "10.0.0.13")
    desk.register()
    mobile.register()
    call = alice.call("1002")
    mobile.respond(mobile.incoming(), 180)

    desk.respond(desk.incoming(), desk_status)
    if mobile_status is not None:
        assert alice.final(call.invite) is None, "answered before every phone had failed"
        mobile.respond(mobile.incoming(), mobile_status)
    else:
        assert mobile.requests("CANCEL"), "a 6xx did not stop the other phones"

    final = alice.final(call.invite)
    assert final is not None and final.status == caller_gets
    [cdr] = net.cdrs
    assert (cdr.hangup_cause, cdr.hangup_by) == (cause, "callee")


def test_callee_challenging_the_pbx_gives_the_caller_403_not_a_challenge(
    net: Network, alice: Phone, bob: Phone
) -> None:
    call = alice.call("1002")

    bob.respond(
        bob.incoming(), 407, headers=[("Proxy-Authenticate", 'Digest realm="x", nonce="n"')]
    )

    final = alice.final(call.invite)
    assert final is not None and final.status == 403


def test_early_media_sdp_reaches_the_caller(net: Network, alice: Phone, bob: Phone) -> None:
    call = alice.call("1002")

    bob.respond(bob.incoming(), 183, body=SDP_ANSWER)

    [progress] = [m for m in alice.inbox if isinstance(m, Response) and m.status == 183]
    assert progress.body == SDP_ANSWER and progress.call_id == call.invite.call_id


def test_retransmitted_200_from_the_callee_is_acked_again(
    net: Network, alice: Phone, bob: Phone
) -> None:
    call = alice.call("1002")
    ringing = bob.incoming()
    bob.respond(ringing, 200, body=SDP_ANSWER)
    alice.ack(call)

    bob.respond(ringing, 200, body=SDP_ANSWER)  # our ACK was lost

    assert len(bob.requests("ACK")) == 2
    assert alice.statuses(call.invite).count(200) == 1
    assert len(net.pbx.b2bua) == 1


def test_cancel_for_an_unknown_call_gets_481(net: Network, alice: Phone, bob: Phone) -> None:
    call = alice.call("1002")
    bob.answer(bob.incoming())
    alice.ack(call)
    stray = cancel_for(call.invite)
    stray.headers.set("Via", alice.via())

    alice.send(stray)

    assert alice.statuses(stray) == [481]
    assert len(net.pbx.b2bua) == 1


def test_cancel_arriving_after_the_answer_leaves_the_call_up(
    net: Network, alice: Phone, bob: Phone
) -> None:
    call = alice.call("1002")
    bob.answer(bob.incoming())

    alice.send(cancel := cancel_for(call.invite))

    assert alice.statuses(cancel) == [200]
    assert 487 not in alice.statuses(call.invite)
    assert not bob.requests("BYE") and not net.cdrs
