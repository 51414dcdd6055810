"""The store: directory rows, registrations across restarts, durable CDRs, the demo tenant."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given, settings
from hypothesis import strategies as st

from callplane.core.dialplan import DialPlan
from callplane.store import Store
from callplane.store.demo import DEMO_DID, DEMO_EXTENSIONS, ensure_demo
from callplane.store.errors import AlreadyExists, InvalidValue, NotFound
from callplane.store.models import Base
from callplane.store.records import CdrRec, RegistrationRec

T0 = 1_790_000_000.25  # an epoch second with a fraction, in 2026


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.for_data_dir(tmp_path / "data")
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def acme(store: Store) -> Store:
    store.add_tenant("acme", domain="PBX.Acme.example", is_default=True)
    store.add_extension("acme", "1001", "s3cret-1001", display_name="Alice")
    store.add_extension("acme", "1002", "s3cret-1002", caller_id_number="01 23 45 67 89")
    store.add_trunk(
        "acme",
        "provider",
        "192.0.2.10",
        port=5080,
        auth_mode="register",
        username="acme",
        password="pw",
        caller_id_mode="fixed",
        caller_id_number="+33 1 23 45 67 89",
    )
    store.add_did("acme", "provider", "01 23 45 67 89", destination="1001")
    return store


def registration(
    ext_id: int, tenant_id: int, contact: str, expires_at: float, cseq: int = 1
) -> RegistrationRec:
    return RegistrationRec(
        extension_id=ext_id,
        tenant_id=tenant_id,
        aor="sip:1001@pbx.acme.example",
        contact=contact,
        transport="UDP",
        source_host="198.51.100.7",
        source_port=5062,
        expires_at=expires_at,
        call_id="a84b4c76e66710",
        cseq=cseq,
        user_agent="baresip",
        instance_id=None,
    )


def cdr(tenant_id: int, call_id: str, started_at: float, **changes: object) -> CdrRec:
    fields: dict[str, object] = {
        "tenant_id": tenant_id,
        "call_id": call_id,
        "from_number": "1001",
        "to_number": "1002",
        "direction": "internal",
        "trunk_id": None,
        "started_at": started_at,
        "answered_at": started_at + 3.5,
        "ended_at": started_at + 45.5,
        "billable_s": 42,
        "hangup_cause": "normal clearing",
        "hangup_status": None,
        "hangup_by": "caller",
    }
    fields.update(changes)
    return CdrRec(**fields)  # type: ignore[arg-type]


# ---- schema -----------------------------------------------------------------------------------


def test_migration_creates_exactly_the_models(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert diff == []


def test_migrate_twice_keeps_the_rows(acme: Store) -> None:
    acme.migrate()
    assert [t.name for t in acme.list_tenants()] == ["acme"]


def test_sqlite_store_runs_in_wal_mode_with_full_sync(store: Store, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "data" / "callplane.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


# ---- directory --------------------------------------------------------------------------------


def test_directory_finds_rows_by_what_sip_gives(acme: Store) -> None:
    d = acme.load_directory()
    tenant = d.tenant_by_domain("pbx.ACME.example")
    assert tenant is not None and tenant.name == "acme"
    assert d.default_tenant() == tenant
    alice = d.extension(tenant.id, "1001")
    assert alice is not None and alice.display_name == "Alice" and alice.ring_timeout_s == 30
    did = d.did("+33123456789")
    assert did is not None and did.destination == "1001" and did.destination_type == "extension"
    trunk = d.trunk_by_id(did.trunk_id)
    assert trunk is not None and d.trunks_of(tenant.id) == (trunk,)
    assert d.extension(tenant.id, "1999") is None


def test_numbers_are_stored_in_e164(acme: Store) -> None:
    bob = next(e for e in acme.list_extensions("acme") if e.number == "1002")
    assert bob.caller_id_number == "+33123456789"
    assert [d.number for d in acme.list_dids()] == ["+33123456789"]
    assert acme.list_trunks()[0].caller_id_number == "+33123456789"


def test_tenant_dial_plan_round_trips(store: Store) -> None:
    plan = DialPlan(
        country="US", extension_digits=(2, 4), allow_international=True, external_prefix="9"
    )
    store.add_tenant("globex", country="us", timezone="America/New_York", dial_plan=plan)
    assert store.list_tenants()[0].dial_plan == plan


def test_default_tenant_is_the_only_one_or_the_flagged_one(store: Store) -> None:
    store.add_tenant("one")
    assert store.load_directory().default_tenant().name == "one"  # type: ignore[union-attr]
    store.add_tenant("two")
    assert store.load_directory().default_tenant() is None
    store.add_tenant("three", is_default=True)
    store.add_tenant("four", is_default=True)
    assert store.load_directory().default_tenant().name == "four"  # type: ignore[union-attr]


def test_trunk_inbound_sources_default_to_the_provider(acme: Store) -> None:
    acme.add_trunk("acme", "by-ip", "203.0.113.5")
    by_name = {t.name: t for t in acme.list_trunks("acme")}
    assert by_name["by-ip"].inbound_sources == ("203.0.113.5:5060",)
    assert by_name["provider"].inbound_sources == ("192.0.2.10:5080", "192.0.2.10")
    acme.add_trunk("acme", "listed", "203.0.113.6", inbound_sources=["203.0.113.7", "[::1]:5070"])
    listed = next(t for t in acme.list_trunks() if t.name == "listed")
    assert listed.inbound_sources == ("203.0.113.7", "[::1]:5070")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.add_tenant("acme"), AlreadyExists, "tenant 'acme' already exists"),
        (lambda s: s.add_tenant("other", domain="pbx.acme.example"), AlreadyExists, "domain"),
        (lambda s: s.add_tenant("x", country="ZZ"), InvalidValue, "unknown country 'ZZ'"),
        (lambda s: s.add_tenant("x", timezone="Mars/Olympus"), InvalidValue, "time zone"),
        (lambda s: s.add_tenant("bad name"), InvalidValue, "tenant name 'bad name'"),
        (lambda s: s.add_extension("nope", "1001", "secret-pw"), NotFound, "no tenant named"),
        (lambda s: s.add_extension("acme", "1001", "secret-pw"), AlreadyExists, "1001 already"),
        (lambda s: s.add_extension("acme", "12", "secret-pw"), InvalidValue, "3 to 6 digits"),
        (lambda s: s.add_extension("acme", "10a1", "secret-pw"), InvalidValue, "3 to 6 digits"),
        (lambda s: s.add_extension("acme", "1003", "123"), InvalidValue, "at least 6"),
        (
            lambda s: s.add_extension("acme", "1003", "secret-pw", caller_id_number="12"),
            InvalidValue,
            "not a possible phone number",
        ),
        (lambda s: s.add_trunk("acme", "t", "h", transport="SCTP"), InvalidValue, "transport"),
        (lambda s: s.add_trunk("acme", "t", "h", port=70000), InvalidValue, "port"),
        (lambda s: s.add_trunk("acme", "t", "h", auth_mode="register"), InvalidValue, "username"),
        (lambda s: s.add_trunk("acme", "t", "h", caller_id_mode="fixed"), InvalidValue, "fixed"),
        (lambda s: s.add_trunk("acme", "t", "h", inbound_sources=["a b"]), InvalidValue, "source"),
        (lambda s: s.add_trunk("acme", "provider", "h"), AlreadyExists, "trunk 'provider'"),
        (lambda s: s.add_did("acme", "nope", "0123456780", destination="1001"), NotFound, "trunk"),
        (
            lambda s: s.add_did("acme", "provider", "0123456780", destination="1999"),
            NotFound,
            "no extension 1999",
        ),
        (
            lambda s: s.add_did("acme", "provider", "+33123456789", destination="1002"),
            AlreadyExists,
            "DID +33123456789 already exists",
        ),
    ],
)
def test_bad_rows_are_refused_with_a_named_error(
    acme: Store, call: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        call(acme)  # type: ignore[operator]


def test_refused_row_leaves_nothing_behind(acme: Store) -> None:
    with pytest.raises(InvalidValue):
        acme.add_trunk("acme", "half", "h", transport="SCTP")
    assert [t.name for t in acme.list_trunks()] == ["provider"]


def test_list_by_unknown_tenant_is_not_found(acme: Store) -> None:
    with pytest.raises(NotFound, match="no tenant named 'globex'"):
        acme.list_extensions("globex")


# ---- registrations ----------------------------------------------------------------------------


def test_registrations_survive_a_restart(acme: Store, tmp_path: Path) -> None:
    alice = acme.list_extensions("acme")[0]
    acme.save_registration(registration(alice.id, alice.tenant_id, "sip:a@198.51.100.7", T0 + 60))
    acme.save_registration(registration(alice.id, alice.tenant_id, "sip:b@198.51.100.8", T0 + 90))
    acme.close()
    reopened = Store.for_data_dir(tmp_path / "data")
    reopened.migrate()
    regs = reopened.load_registrations(T0)
    assert [(r.contact, r.expires_at) for r in regs] == [
        ("sip:a@198.51.100.7", T0 + 60),
        ("sip:b@198.51.100.8", T0 + 90),
    ]
    assert regs[0].user_agent == "baresip" and regs[0].source_port == 5062
    reopened.close()


def test_reregistering_the_same_contact_refreshes_it(acme: Store) -> None:
    alice = acme.list_extensions("acme")[0]
    acme.save_registration(registration(alice.id, alice.tenant_id, "sip:a@h", T0 + 60, cseq=1))
    acme.save_registration(registration(alice.id, alice.tenant_id, "sip:a@h", T0 + 3600, cseq=2))
    [reg] = acme.load_registrations(T0)
    assert reg.cseq == 2 and reg.expires_at == T0 + 3600


def test_expired_registrations_are_not_loaded_and_are_purged(acme: Store) -> None:
    alice = acme.list_extensions("acme")[0]
    acme.save_registration(registration(alice.id, alice.tenant_id, "sip:old@h", T0 - 1))
    acme.save_registration(registration(alice.id, alice.tenant_id, "sip:new@h", T0 + 1))
    assert [r.contact for r in acme.load_registrations(T0)] == ["sip:new@h"]
    assert acme.purge_registrations(T0) == 1
    assert acme.purge_registrations(T0) == 0
    assert [r.contact for r in acme.load_registrations(T0 - 10)] == ["sip:new@h"]


def test_unregistering_one_or_all_contacts(acme: Store) -> None:
    alice, bob = acme.list_extensions("acme")
    for contact in ("sip:a@h", "sip:b@h"):
        acme.save_registration(registration(alice.id, alice.tenant_id, contact, T0 + 60))
    acme.save_registration(registration(bob.id, bob.tenant_id, "sip:bob@h", T0 + 60))
    acme.delete_registration(alice.id, "sip:a@h")
    assert {r.contact for r in acme.load_registrations(T0)} == {"sip:b@h", "sip:bob@h"}
    acme.delete_registrations(alice.id)
    assert [r.contact for r in acme.load_registrations(T0)] == ["sip:bob@h"]


# ---- CDRs -------------------------------------------------------------------------------------


def test_cdr_is_durable_once_written(acme: Store, tmp_path: Path) -> None:
    tenant = acme.list_tenants()[0]
    trunk = acme.list_trunks()[0]
    row = cdr(
        tenant.id,
        "call-1",
        T0,
        direction="outbound",
        trunk_id=trunk.id,
        to_number="+33987654321",
        hangup_status=486,
        hangup_by="callee",
        hangup_cause="busy",
    )
    acme.write_cdr(row)
    with sqlite3.connect(tmp_path / "data" / "callplane.db") as other_process:
        assert other_process.execute("SELECT billable_s FROM cdrs").fetchall() == [(42,)]
    assert acme.list_cdrs() == [row]


def test_cdrs_list_newest_first_per_tenant_with_limit(acme: Store) -> None:
    acme.add_tenant("globex")
    acme_id, globex_id = (t.id for t in acme.list_tenants())
    for i in range(5):
        acme.write_cdr(cdr(acme_id, f"acme-{i}", T0 + i))
    acme.write_cdr(cdr(globex_id, "globex-0", T0 + 10, answered_at=None, billable_s=0))
    assert [c.call_id for c in acme.list_cdrs(tenant="acme", limit=3)] == [
        "acme-4",
        "acme-3",
        "acme-2",
    ]
    [globex] = acme.list_cdrs(tenant="globex")
    assert globex.answered_at is None and globex.billable_s == 0
    assert len(acme.list_cdrs()) == 6


def test_cdr_with_unknown_direction_is_refused(acme: Store) -> None:
    with pytest.raises(InvalidValue, match="direction"):
        acme.write_cdr(cdr(1, "x", T0, direction="sideways"))
    assert acme.list_cdrs() == []


@settings(max_examples=25, deadline=None)
@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))  # up to 2100
def test_cdr_times_round_trip_to_the_microsecond(
    tmp_path_factory: pytest.TempPathFactory, when: float
) -> None:
    s = Store.for_data_dir(tmp_path_factory.mktemp("prop"))
    s.migrate()
    s.add_tenant("p")
    s.write_cdr(cdr(1, "p", when, answered_at=None))
    [got] = s.list_cdrs()
    s.close()
    assert abs(got.started_at - when) < 2e-6


# ---- demo -------------------------------------------------------------------------------------


def test_demo_tenant_is_created_once_and_keeps_its_passwords(store: Store) -> None:
    first = ensure_demo(store)
    assert [n for n, _ in first] == list(DEMO_EXTENSIONS)
    assert all(len(p) >= 12 for _, p in first)
    assert len({p for _, p in first}) == 5
    assert ensure_demo(store) == first
    d = store.load_directory()
    demo = d.default_tenant()
    assert demo is not None and demo.name == "demo" and demo.country == "FR" and demo.domain is None
    did = d.did(DEMO_DID)
    assert did is not None and did.destination == "1001"
    [trunk] = d.trunks_of(demo.id)
    assert (trunk.name, trunk.host, trunk.port, trunk.auth_mode) == (
        "demo-provider",
        "127.0.0.1",
        5080,
        "ip",
    )
    assert len(d.extensions_of(demo.id)) == 5
