"""Phones registering to the PBX (RFC 3261 §10.3) with digest authentication, as calls see it.

A binding is proven by what matters to a user: whether a call to the extension rings that phone.
"""

from __future__ import annotations

import pytest
from pbx_network import START, Network, Phone, directory

from callplane.core.sip.digest import NONCE_TTL_S
from callplane.pbx.registrar import MAX_EXPIRES_S, MIN_EXPIRES_S, DeleteBinding, SaveBinding
from callplane.store.records import RegistrationRec

BOB_ID = 2  # extension 1002


@pytest.fixture
def net() -> Network:
    return Network(directory(trunk=None))


@pytest.fixture
def alice(net: Network) -> Phone:
    phone = Phone(net, "1001", "10.0.0.11")
    assert phone.register().status == 200
    return phone


def _rings(caller: Phone, phone: Phone) -> bool:
    """Whether a call from `caller` to `phone`'s extension makes `phone` ring."""
    before = len(phone.requests("INVITE"))
    caller.call(phone.number)
    return len(phone.requests("INVITE")) > before


def _contact_expires(response_contacts: list[str]) -> dict[str, int]:
    found = {}
    for value in response_contacts:
        uri, _, params = value.partition(">;")
        found[uri.strip("<")] = int(params.split("expires=")[1])
    return found


def test_registered_phone_is_told_its_binding_and_is_stored(net: Network, alice: Phone) -> None:
    bob = Phone(net, "1002", "10.0.0.12")

    ok = bob.register(expires=600)

    assert ok.status == 200
    assert _contact_expires(ok.headers.values("Contact")) == {"sip:1002@10.0.0.12:5060": 600}
    [saved] = [
        op
        for op in net.store_ops
        if isinstance(op, SaveBinding) and op.record.extension_id == BOB_ID
    ]
    assert (saved.record.source_host, saved.record.expires_at) == ("10.0.0.12", START + 600)
    assert _rings(alice, bob)


def test_binding_lapses_when_not_refreshed(net: Network, alice: Phone) -> None:
    bob = Phone(net, "1002", "10.0.0.12")
    bob.register(expires=MIN_EXPIRES_S)

    net.advance(MIN_EXPIRES_S + 1)
    call = alice.call("1002")

    final = alice.final(call.invite)
    assert final is not None and final.status == 480
    assert not bob.requests("INVITE")


def test_refreshed_binding_keeps_ringing(net: Network, alice: Phone) -> None:
    bob = Phone(net, "1002", "10.0.0.12")
    bob.register(expires=MIN_EXPIRES_S)
    net.advance(MIN_EXPIRES_S - 10)
    bob.register(expires=MIN_EXPIRES_S)

    net.advance(30)

    assert _rings(alice, bob)


def test_too_short_expiry_gets_423_with_min_expires(net: Network) -> None:
    bob = Phone(net, "1002", "10.0.0.12")

    answer = bob.register(expires=MIN_EXPIRES_S - 1)

    assert answer.status == 423
    assert answer.headers.get("Min-Expires") == str(MIN_EXPIRES_S)


def test_too_long_expiry_is_shortened(net: Network) -> None:
    bob = Phone(net, "1002", "10.0.0.12")

    ok = bob.register(expires=10 * MAX_EXPIRES_S)

    assert _contact_expires(ok.headers.values("Contact")) == {
        "sip:1002@10.0.0.12:5060": MAX_EXPIRES_S
    }


def test_several_phones_of_one_extension_all_ring(net: Network, alice: Phone) -> None:
    desk = Phone(net, "1002", "10.0.0.12")
    mobile = Phone(net, "1002", "10.0.0.13")
    desk.register()

    ok = mobile.register()

    assert set(_contact_expires(ok.headers.values("Contact"))) == {
        "sip:1002@10.0.0.12:5060",
        "sip:1002@10.0.0.13:5060",
    }
    alice.call("1002")
    assert desk.requests("INVITE") and mobile.requests("INVITE")


def test_unregistering_one_phone_leaves_the_other_ringing(net: Network, alice: Phone) -> None:
    desk = Phone(net, "1002", "10.0.0.12")
    mobile = Phone(net, "1002", "10.0.0.13")
    desk.register()
    mobile.register()

    ok = mobile.register(expires=0)

    assert list(_contact_expires(ok.headers.values("Contact"))) == ["sip:1002@10.0.0.12:5060"]
    assert DeleteBinding(BOB_ID, "sip:1002@10.0.0.13:5060") in net.store_ops
    alice.call("1002")
    assert desk.requests("INVITE") and not mobile.requests("INVITE")


def test_wildcard_unregister_removes_every_phone(net: Network, alice: Phone) -> None:
    desk = Phone(net, "1002", "10.0.0.12")
    mobile = Phone(net, "1002", "10.0.0.13")
    desk.register()
    mobile.register()

    ok = desk.register(expires=0, contact="*")

    assert ok.status == 200 and not ok.headers.values("Contact")
    assert DeleteBinding(BOB_ID, None) in net.store_ops
    call = alice.call("1002")
    final = alice.final(call.invite)
    assert final is not None and final.status == 480


def test_wildcard_without_expires_zero_is_refused(net: Network) -> None:
    bob = Phone(net, "1002", "10.0.0.12")

    answer = bob.register(expires=3600, contact="*")

    assert answer.status == 400


def test_calls_go_to_the_address_the_register_came_from(net: Network, alice: Phone) -> None:
    behind_nat = Phone(net, "1002", "198.51.100.20", port=40_312)
    behind_nat.register(contact="<sip:1002@192.168.1.20:5060>")

    alice.call("1002")

    [invite] = behind_nat.requests("INVITE")
    assert invite.uri == "sip:1002@192.168.1.20:5060"


def test_bindings_restored_from_the_store_ring_and_expired_ones_do_not() -> None:
    def record(ext_id: int, number: str, host: str, expires_at: float) -> RegistrationRec:
        return RegistrationRec(
            ext_id, 1, f"sip:{number}@acme.example", f"sip:{number}@{host}:5060", "UDP",
            host, 5060, expires_at, "old-call-id", 7,
        )  # fmt: skip

    net = Network(
        directory(trunk=None),
        registrations=[
            record(2, "1002", "10.0.0.12", START + 300),
            record(3, "1003", "10.0.0.13", START - 1),
        ],
    )
    alice = Phone(net, "1001", "10.0.0.11")
    alice.register()
    bob = Phone(net, "1002", "10.0.0.12")
    carol = Phone(net, "1003", "10.0.0.13")

    assert _rings(alice, bob)
    call = alice.call("1003")
    final = alice.final(call.invite)
    assert final is not None and final.status == 480
    assert not carol.requests("INVITE")


def test_wrong_password_and_unknown_user_get_the_same_answer(net: Network) -> None:
    wrong = Phone(net, "1002", "10.0.0.12", password="guess")
    unknown = Phone(net, "1999", "10.0.0.13")

    refused = wrong.register()
    also_refused = unknown.register()

    assert refused.status == also_refused.status == 401
    assert [n for n, _ in refused.headers] == [n for n, _ in also_refused.headers]
    assert not [op for op in net.store_ops if isinstance(op, SaveBinding)]


def test_answer_with_an_expired_nonce_is_rechallenged_as_stale(net: Network) -> None:
    bob = Phone(net, "1002", "10.0.0.12")

    answer = bob.register(answer_after_s=NONCE_TTL_S + 1)

    assert answer.status == 401
    assert all("stale=true" in v for v in answer.headers.get_all("WWW-Authenticate"))


def test_credentials_of_one_extension_cannot_register_another(net: Network) -> None:
    impostor = Phone(net, "1002", "10.0.0.66", password="pw-1001")
    impostor.number = "1001"  # authenticates as 1001 ...
    impostor_aor = "sip:1002@acme.example"  # ... for 1002's address of record

    answer = impostor.register(contact="<sip:1002@10.0.0.66:5060>", aor=impostor_aor)

    assert answer.status == 403
