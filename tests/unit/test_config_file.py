"""YAML import: the documented example loads, re-importing is idempotent, faults name their path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from callplane.store import ConfigFileError, Store
from callplane.store.config_file import import_config

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "configuration-example.yaml"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.for_data_dir(tmp_path / "data")
    s.migrate()
    yield s
    s.close()


def config(**trunk_changes: Any) -> dict[str, Any]:
    trunk: dict[str, Any] = {
        "name": "provider",
        "host": "127.0.0.1",
        "port": 5080,
        "transport": "udp",
        "auth": "register",
        "username": "acme",
        "password": "pw",
        "inbound_sources": ["127.0.0.1:5080"],
        "caller_id": {"mode": "fixed", "number": "+33123456789"},
        "number_format": "e164",
        "dids": [{"number": "+33123456789", "extension": "1001"}],
    }
    trunk.update(trunk_changes)
    return {
        "tenants": [
            {
                "name": "acme",
                "domain": "127.0.0.1",
                "default": True,
                "country": "FR",
                "timezone": "Europe/Paris",
                "dial_plan": {"allow_international": False, "external_prefix": ""},
                "extensions": [
                    {
                        "number": "1001",
                        "password": "s3cret-1001",
                        "name": "Alice",
                        "ring_timeout_s": 20,
                        "caller_id": "+33123456789",
                    }
                ],
                "trunks": [trunk],
            }
        ]
    }


def write(tmp_path: Path, data: Any, name: str = "callplane.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def problems(store: Store, path: Path) -> list[str]:
    with pytest.raises(ConfigFileError) as caught:
        import_config(store, path)
    return caught.value.problems


def snapshot(store: Store) -> tuple[object, ...]:
    d = store.load_directory()
    return (d.tenants, d.extensions, d.trunks, d.dids)


def test_documented_example_imports(store: Store) -> None:
    counts = import_config(store, EXAMPLE)
    assert counts == {"tenants": 1, "extensions": 3, "trunks": 2, "dids": 2}
    d = store.load_directory()
    did = d.did("+33123456780")
    assert did is not None and did.destination == "1003"


def test_import_of_the_brief_format(store: Store, tmp_path: Path) -> None:
    import_config(store, write(tmp_path, config()))
    d = store.load_directory()
    tenant = d.tenant_by_domain("127.0.0.1")
    assert tenant is not None and tenant.is_default and not tenant.dial_plan.allow_international
    alice = d.extension(tenant.id, "1001")
    assert alice is not None
    assert (alice.display_name, alice.ring_timeout_s, alice.caller_id_number) == (
        "Alice",
        20,
        "+33123456789",
    )
    [trunk] = d.trunks_of(tenant.id)
    assert (trunk.transport, trunk.auth_mode, trunk.caller_id_mode) == ("UDP", "register", "fixed")
    assert trunk.inbound_sources == ("127.0.0.1:5080",)


def test_importing_twice_gives_the_same_rows(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, config())
    import_config(store, path)
    before = snapshot(store)
    import_config(store, path)
    assert snapshot(store) == before


def test_reimport_updates_changed_fields_in_place(store: Store, tmp_path: Path) -> None:
    import_config(store, write(tmp_path, config()))
    [trunk_before] = store.list_trunks()
    changed = config(port=5090, auth="ip", caller_id={"mode": "passthrough"})
    changed["tenants"][0]["extensions"][0]["ring_timeout_s"] = 40
    import_config(store, write(tmp_path, changed))
    [trunk] = store.list_trunks()
    assert trunk.id == trunk_before.id
    assert (trunk.port, trunk.auth_mode, trunk.caller_id_mode) == (5090, "ip", "passthrough")
    assert store.list_extensions()[0].ring_timeout_s == 40


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"port": 70000}, "tenants.0.trunks.0.port: Input should be less than or equal to 65535"),
        ({"transport": "sctp"}, "tenants.0.trunks.0.transport: Input should be 'UDP' or 'TCP'"),
        ({"auth": "magic"}, "tenants.0.trunks.0.auth: Input should be 'register' or 'ip'"),
        ({"colour": "red"}, "tenants.0.trunks.0.colour: Extra inputs are not permitted"),
        ({"host": None}, "tenants.0.trunks.0.host: Input should be a valid string"),
        (
            {"caller_id": {"mode": "fixed", "number": "12"}},
            "tenants.0.trunks.0: '12' is not a possible phone number in FR",
        ),
        (
            {"dids": [{"number": "+33123456789", "extension": "1999"}]},
            "tenants.0.trunks.0.dids.0: no extension 1999 in tenant 'acme'",
        ),
        (
            {"username": None},
            "tenants.0.trunks.0: trunk 'provider' registers, so it needs a username and a password",
        ),
    ],
)
def test_fault_is_reported_with_file_and_path(
    store: Store, tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    path = write(tmp_path, config(**changes))
    reported = problems(store, path)
    assert any(p.startswith(f"{path}: {expected}") for p in reported), reported
    assert store.list_tenants() == []


def test_every_fault_of_a_file_is_reported_and_nothing_written(
    store: Store, tmp_path: Path
) -> None:
    data = config()
    data["tenants"][0]["extensions"].append({"number": "12", "password": "s3cret-0012"})
    data["tenants"][0]["extensions"].append({"number": "1003", "password": "x"})
    path = write(tmp_path, data)
    reported = problems(store, path)
    assert [p.split(": ")[1] for p in reported] == [
        "tenants.0.extensions.1",
        "tenants.0.extensions.2",
    ]
    assert store.list_tenants() == []


def test_unquoted_numbers_are_read_as_text(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tenants:\n  - name: acme\n    extensions:\n      - {number: 1001, password: abcdef123}\n",
    )
    import_config(store, path)
    assert store.list_extensions()[0].number == "1001"


def test_yaml_syntax_error_names_the_line(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "tenants:\n  - name: acme\n    extensions: [\n")
    [problem] = problems(store, path)
    assert problem.startswith(f"{path}: line ")


def test_missing_file_is_reported(store: Store, tmp_path: Path) -> None:
    [problem] = problems(store, tmp_path / "absent.yaml")
    assert problem.startswith(f"{tmp_path / 'absent.yaml'}: cannot read")


def test_empty_file_imports_nothing(store: Store, tmp_path: Path) -> None:
    assert import_config(store, write(tmp_path, "")) == {
        "tenants": 0,
        "extensions": 0,
        "trunks": 0,
        "dids": 0,
    }


def test_did_owned_by_another_tenant_is_refused(store: Store, tmp_path: Path) -> None:
    import_config(store, write(tmp_path, config()))
    other = config()
    other["tenants"][0].update(name="globex", domain="globex.example", default=False)
    reported = problems(store, write(tmp_path, other, "globex.yaml"))
    assert any("DID +33123456789 already exists (tenant 'acme')" in p for p in reported)
    assert [t.name for t in store.list_tenants()] == ["acme"]
