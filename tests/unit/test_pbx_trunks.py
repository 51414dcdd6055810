"""Calls in and out through a provider trunk, and Callplane's own registration to the provider.

The provider is a scripted peer at the trunk's address; where it challenges, it does so with a
real `DigestServer` and checks the answer the PBX gives, as a carrier would.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from pbx_network import (
    DID_NUMBER,
    PBX_ADDRESS,
    PROVIDER_HOST,
    SDP_ANSWER,
    TRUNK,
    Network,
    Phone,
    directory,
)

from callplane.core.dialplan import DialPlan
from callplane.core.sip.dialog import cancel_for
from callplane.core.sip.digest import DigestServer, parse_credentials
from callplane.core.sip.message import Request
from callplane.store.records import TrunkRec

PROVIDER_REALM = "provider.example"
PROVIDER_SECRET = b"provider-nonce-key"
TALK_S = 42
NATIONAL = "0142685300"  # a Paris fixed-line number, dialled nationally
E164 = "+33142685300"


def _network(trunk: TrunkRec = TRUNK, plan: DialPlan | None = None) -> Network:
    return Network(directory(trunk=trunk, plan=plan))


def _phones(net: Network) -> tuple[Phone, Phone, Phone]:
    alice = Phone(net, "1001", "10.0.0.11")
    bob = Phone(net, "1002", "10.0.0.12")
    assert alice.register().status == 200
    assert bob.register().status == 200
    return alice, bob, Phone(net, "+33612345678", PROVIDER_HOST, domain=PBX_ADDRESS.host)


def _challenge(provider: Phone, request: Request, server: DigestServer, now: float) -> None:
    name = "WWW-Authenticate" if request.method == "REGISTER" else "Proxy-Authenticate"
    status = 401 if request.method == "REGISTER" else 407
    challenges = [(name, value) for value in server.challenge_headers(now)]
    provider.respond(request, status, headers=challenges)


def _verified(request: Request, server: DigestServer, now: float) -> bool:
    name = "Authorization" if request.method == "REGISTER" else "Proxy-Authorization"
    value = request.headers.get(name)
    if value is None:
        return False
    credentials = parse_credentials(value)
    return (
        credentials.username == "acme"
        and server.verify(request.method, credentials, "trunk-pw", now).ok
    )


# --- inbound -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialled", [DID_NUMBER, "0142685300", "33142685300"])
def test_call_from_the_trunk_to_a_did_rings_its_extension(dialled: str) -> None:
    net = _network()
    alice, bob, provider = _phones(net)
    call = provider.call(dialled, authenticate=False)

    ringing = bob.incoming()
    assert ringing.invite.from_.uri.user == "+33612345678"
    bob.answer(ringing)
    provider.ack(call)
    net.advance(TALK_S)
    bob.in_dialog(bob.dialog_of(ringing), "BYE")

    assert provider.requests("BYE")
    assert not alice.requests("INVITE")
    [cdr] = net.cdrs
    assert (cdr.direction, cdr.trunk_id) == ("inbound", TRUNK.id)
    assert (cdr.from_number, cdr.to_number) == ("+33612345678", DID_NUMBER)
    assert (cdr.billable_s, cdr.hangup_by) == (TALK_S, "callee")


def test_provider_calling_our_registered_contact_is_routed_by_the_did_in_to() -> None:
    net = _network()
    _alice, bob, provider = _phones(net)

    provider.call(DID_NUMBER, authenticate=False, request_user="acme")

    ringing = bob.incoming()
    assert ringing.invite.from_.uri.user == "+33612345678"


def test_trunk_call_to_a_number_that_is_not_our_did_gets_404() -> None:
    net = _network()
    _alice, bob, provider = _phones(net)

    call = provider.call("+33142685399", authenticate=False)

    final = provider.final(call.invite)
    assert final is not None and final.status == 404
    assert not bob.requests("INVITE")


def test_call_to_a_did_from_an_unknown_source_must_authenticate() -> None:
    net = _network()
    _alice, bob, _provider = _phones(net)
    stranger = Phone(net, "+33612345678", "198.51.100.7", domain=PBX_ADDRESS.host)

    call = stranger.call(DID_NUMBER, authenticate=False)

    final = stranger.final(call.invite)
    assert final is not None and final.status == 407
    assert not bob.requests("INVITE")


def test_listed_inbound_source_host_may_call_from_any_port() -> None:
    net = _network(replace(TRUNK, inbound_sources=("203.0.113.6",)))
    _alice, bob, _provider = _phones(net)
    gateway = Phone(net, "+33612345678", "203.0.113.6", port=5080, domain=PBX_ADDRESS.host)

    gateway.call(DID_NUMBER, authenticate=False)

    assert bob.incoming().invite.from_.uri.user == "+33612345678"


# --- outbound ------------------------------------------------------------------------------------


def test_outside_call_answers_the_providers_challenge_once() -> None:
    net = _network()
    alice, _bob, provider = _phones(net)
    server = DigestServer(PROVIDER_REALM, PROVIDER_SECRET)
    call = alice.call(NATIONAL)
    first = provider.incoming().invite
    assert first.uri == f"sip:{E164}@{PROVIDER_HOST}:5060"

    _challenge(provider, first, server, net.now)

    assert provider.requests("ACK"), "the 407 was not ACKed"
    retried = provider.incoming()
    assert retried.invite.call_id == first.call_id
    assert retried.invite.cseq.seq == first.cseq.seq + 1
    assert _verified(retried.invite, server, net.now)
    provider.answer(retried, body=SDP_ANSWER)
    ok = alice.final(call.invite)
    assert ok is not None and ok.status == 200 and ok.body == SDP_ANSWER
    dialog = alice.ack(call)
    net.advance(TALK_S)
    alice.in_dialog(dialog, "BYE")
    assert provider.requests("BYE")
    [cdr] = net.cdrs
    assert (cdr.direction, cdr.trunk_id, cdr.to_number) == ("outbound", TRUNK.id, E164)
    assert (cdr.from_number, cdr.billable_s, cdr.hangup_by) == ("1001", TALK_S, "caller")


def test_provider_rejecting_our_answer_fails_the_call_without_a_loop() -> None:
    net = _network()
    alice, _bob, provider = _phones(net)
    server = DigestServer(PROVIDER_REALM, PROVIDER_SECRET)
    call = alice.call(NATIONAL)
    _challenge(provider, provider.incoming().invite, server, net.now)

    _challenge(provider, provider.incoming().invite, server, net.now)

    assert len(provider.requests("INVITE")) == 2
    final = alice.final(call.invite)
    assert final is not None and final.status == 403  # not a 407: the caller has no answer
    [cdr] = net.cdrs
    assert (cdr.answered_at, cdr.direction, cdr.hangup_status) == (None, "outbound", 403)


def test_provider_not_answering_gives_the_caller_408() -> None:
    net = _network()
    alice, _bob, provider = _phones(net)
    call = alice.call(NATIONAL)
    assert provider.requests("INVITE")

    net.advance(40)  # Timer B: 64*T1

    final = alice.final(call.invite)
    assert final is not None and final.status == 408
    [cdr] = net.cdrs
    assert cdr.hangup_cause == "no_answer"


@pytest.mark.parametrize(
    ("mode", "number_format", "caller", "from_user", "presented", "dialled"),
    [
        ("fixed", "e164", "1001", None, "+33140000000", E164),
        ("fixed", "national", "1001", None, "0140000000", NATIONAL),
        ("extension", "e164", "1001", None, "+33140000001", E164),
        ("extension", "national", "1001", None, "0140000001", NATIONAL),
        ("extension", "e164", "1002", None, "+33140000000", E164),  # no own caller ID
        ("passthrough", "e164", "1001", "0612345678", "+33612345678", E164),
        ("passthrough", "e164", "1001", None, "+33140000000", E164),  # 1001 is no number
    ],
)
def test_caller_id_follows_the_trunk_rule(
    mode: str, number_format: str, caller: str, from_user: str | None, presented: str, dialled: str
) -> None:
    net = _network(replace(TRUNK, caller_id_mode=mode, number_format=number_format))
    phones = dict(zip(("1001", "1002"), _phones(net)[:2], strict=True))
    provider = Phone(net, "provider", PROVIDER_HOST)

    phones[caller].call(NATIONAL, from_user=from_user)

    invite = provider.incoming().invite
    assert invite.from_.uri.user == presented
    assert invite.request_uri.user == dialled
    assert invite.to.uri.user == dialled


def test_no_caller_id_at_all_is_presented_as_anonymous() -> None:
    net = _network(replace(TRUNK, caller_id_number=None))
    _alice, bob, provider = _phones(net)

    bob.call(NATIONAL)

    assert provider.incoming().invite.from_.uri.user == "anonymous"


@pytest.mark.parametrize("dialled", ["+12025550123", "0012025550123", "+447911123456"])
def test_international_number_is_refused_403_and_never_reaches_the_trunk(dialled: str) -> None:
    net = _network()
    alice, _bob, provider = _phones(net)

    call = alice.call(dialled)

    final = alice.final(call.invite)
    assert final is not None and final.status == 403
    assert not provider.requests("INVITE")


def test_tenant_allowed_international_calls_goes_out_in_e164() -> None:
    net = _network(plan=DialPlan(country="FR", allow_international=True))
    alice, _bob, provider = _phones(net)

    alice.call("0012025550123")

    assert provider.incoming().invite.request_uri.user == "+12025550123"


def test_outside_call_without_an_enabled_trunk_gets_503() -> None:
    net = _network(replace(TRUNK, enabled=False))
    alice, _bob, provider = _phones(net)

    call = alice.call(NATIONAL)

    final = alice.final(call.invite)
    assert final is not None and final.status == 503
    assert not provider.requests("INVITE")


# --- registering to the provider -----------------------------------------------------------------

REGISTERING = replace(TRUNK, auth_mode="register", register_expires_s=600)


def _register_requests(provider: Phone) -> list[Request]:
    """REGISTERs the provider got, one per CSeq (retransmissions left out)."""
    seen: dict[int, Request] = {}
    for request in provider.requests("REGISTER"):
        seen.setdefault(request.cseq.seq, request)
    return list(seen.values())


def test_trunk_registers_answering_the_challenge_and_refreshes_before_expiry() -> None:
    net = _network(REGISTERING)
    provider = Phone(net, "provider", PROVIDER_HOST)
    server = DigestServer(PROVIDER_REALM, PROVIDER_SECRET)
    [first] = _register_requests(provider)
    assert first.from_.uri.user == "acme" and first.headers.get("Expires") == "600"

    _challenge(provider, first, server, net.now)
    [_, second] = _register_requests(provider)
    assert second.call_id == first.call_id
    assert _verified(second, server, net.now)
    provider.respond(second, 200, headers=[("Expires", "300")])

    assert net.pbx.trunks.status(TRUNK.id) == "registered"
    net.advance(239)
    assert len(_register_requests(provider)) == 2
    net.advance(1)  # 80 % of the 300 s the provider granted
    refresh = _register_requests(provider)[-1]
    assert refresh.call_id == first.call_id and refresh.cseq.seq == 3
    _challenge(provider, refresh, server, net.now)
    again = _register_requests(provider)[-1]
    assert _verified(again, server, net.now)


def test_refused_trunk_registration_is_retried_a_minute_later() -> None:
    net = _network(REGISTERING)
    provider = Phone(net, "provider", PROVIDER_HOST)
    [first] = _register_requests(provider)

    provider.respond(first, 403)

    assert net.pbx.trunks.status(TRUNK.id) == "failed"
    net.advance(59)
    assert len(_register_requests(provider)) == 1
    net.advance(1)
    assert len(_register_requests(provider)) == 2


def test_provider_rejecting_our_password_is_not_hammered() -> None:
    net = _network(REGISTERING)
    provider = Phone(net, "provider", PROVIDER_HOST)
    server = DigestServer(PROVIDER_REALM, PROVIDER_SECRET)

    for _ in range(3):
        _challenge(provider, _register_requests(provider)[-1], server, net.now)

    assert len(_register_requests(provider)) == 3  # one challenge and one stale refresh
    assert net.pbx.trunks.status(TRUNK.id) == "failed"
    net.advance(60)
    assert len(_register_requests(provider)) == 4


def test_unreachable_provider_registration_times_out_and_is_retried() -> None:
    net = _network(REGISTERING)
    provider = Phone(net, "provider", PROVIDER_HOST)

    net.advance(32)  # Timer F: 64*T1

    assert net.pbx.trunks.status(TRUNK.id) == "failed"
    assert len(provider.requests("REGISTER")) > 1  # retransmitted meanwhile (Timer E)
    net.advance(60)
    assert len(_register_requests(provider)) == 2


def test_ip_authenticated_trunk_does_not_register() -> None:
    net = _network()
    provider = Phone(net, "provider", PROVIDER_HOST)

    net.advance(3600)

    assert not provider.requests("REGISTER")
    assert net.pbx.trunks.status(TRUNK.id) == "not registering"


def test_unanswered_outside_call_is_given_up_after_two_minutes() -> None:
    net = _network()
    alice, _bob, provider = _phones(net)
    call = alice.call(NATIONAL)
    provider.respond(provider.incoming(), 180)

    net.advance(119)
    assert alice.final(call.invite) is None
    net.advance(1)

    final = alice.final(call.invite)
    assert final is not None and final.status == 480
    assert provider.requests("CANCEL")
    [cdr] = net.cdrs
    assert (cdr.direction, cdr.hangup_cause, cdr.hangup_by) == ("outbound", "no_answer", "system")


def test_provider_cancelling_an_inbound_call_stops_the_ringing() -> None:
    net = _network()
    _alice, bob, provider = _phones(net)
    call = provider.call(DID_NUMBER, authenticate=False)
    bob.respond(bob.incoming(), 180)

    provider.send(cancel_for(call.invite))

    final = provider.final(call.invite)
    assert final is not None and final.status == 487
    assert bob.requests("CANCEL")
    [cdr] = net.cdrs
    assert (cdr.direction, cdr.hangup_by, cdr.hangup_cause) == ("inbound", "caller", "cancelled")


@pytest.mark.parametrize("number_format", ["e164", "national"])
def test_emergency_number_goes_out_as_dialled(number_format: str) -> None:
    net = _network(replace(TRUNK, number_format=number_format))
    alice, _bob, provider = _phones(net)

    alice.call("112")

    invite = provider.incoming().invite
    assert invite.request_uri.user == "112"
    provider.respond(provider.incoming(), 486)
    assert net.cdrs[0].to_number == "112"


def test_premium_rate_number_is_refused_by_default() -> None:
    net = _network()
    alice, _bob, provider = _phones(net)

    call = alice.call("0899123456")

    final = alice.final(call.invite)
    assert final is not None and final.status == 403
    assert not provider.requests("INVITE")
