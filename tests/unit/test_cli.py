"""The `callplane` command as an operator runs it: add, list, import, read CDRs, serve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from callplane.cli import app
from callplane.store import Store
from callplane.store.records import CdrRec

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "configuration-example.yaml"


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("CALLPLANE_DB_URL", raising=False)
    monkeypatch.setenv("CALLPLANE_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), prog_name="callplane")

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def test_tenant_extension_trunk_did_from_the_command_line(run: Any) -> None:
    ok(run("tenant", "add", "acme", "--domain", "pbx.acme.example", "--international"))
    out = ok(run("extension", "add", "1001", "--name", "Alice", "--caller-id", "0123456789"))
    assert out.startswith("extension 1001 added; password: ")
    ok(run("extension", "add", "1002", "--password", "bob-secret"))
    ok(run("trunk", "add", "provider", "--host", "192.0.2.1", "--port", "5080"))
    ok(run("did", "add", "01 23 45 67 89", "--trunk", "provider", "--extension", "1001"))

    tenants = ok(run("tenant", "list")).splitlines()
    assert tenants[0].split()[:3] == ["ID", "NAME", "DOMAIN"]
    assert "international" in tenants[1] and "pbx.acme.example" in tenants[1]

    exts = ok(run("extension", "list")).splitlines()
    assert [line.split()[:2] for line in exts[1:]] == [["acme", "1001"], ["acme", "1002"]]
    assert exts[0].index("NUMBER") == exts[1].index("1001") == exts[2].index("1002")
    assert "+33123456789" in exts[1] and "bob-secret" not in "".join(exts)
    assert "bob-secret" in ok(run("extension", "list", "--show-passwords"))

    trunks = ok(run("trunk", "list"))
    assert "udp:192.0.2.1:5080" in trunks and "192.0.2.1:5080" in trunks
    assert ok(run("did", "list")).splitlines()[1].split() == [
        "+33123456789",
        "acme",
        "provider",
        "extension",
        "1001",
    ]


def test_errors_exit_1_with_one_line_and_no_traceback(run: Any) -> None:
    ok(run("tenant", "add", "acme"))
    for args, message in [
        (("tenant", "add", "acme"), "error: tenant 'acme' already exists\n"),
        (("extension", "add", "12"), "error: extension number '12' must be 3 to 6 digits"),
        (("extension", "list", "--tenant", "nope"), "error: no tenant named 'nope'\n"),
        (("trunk", "add", "t", "--host", "h", "--transport", "sctp"), "error: transport"),
        (("import", "/nonexistent.yaml"), "error: /nonexistent.yaml: cannot read"),
    ]:
        result = run(*args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith(message), result.stderr
        assert "Traceback" not in result.stderr + result.stdout


def test_extension_without_tenant_needs_a_default_when_several(run: Any) -> None:
    ok(run("tenant", "add", "one"))
    ok(run("tenant", "add", "two"))
    result = run("extension", "add", "1001")
    assert result.exit_code == 1 and "give --tenant" in result.stderr
    ok(run("extension", "add", "1001", "--tenant", "two"))


def test_usage_error_exits_2(run: Any) -> None:
    assert run("trunk", "add", "provider").exit_code == 2  # --host missing
    assert run("no-such-command").exit_code == 2


def test_import_reports_counts_and_faults(run: Any, tmp_path: Path) -> None:
    out = ok(run("import", str(EXAMPLE)))
    assert "1 tenants, 3 extensions, 2 trunks, 2 DIDs" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenants:\n  - name: acme\n    trunks:\n      - {name: p, host: h, port: 0}\n")
    result = run("import", str(bad))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {bad}: tenants.0.trunks.0.port: Input should be greater than or equal to 1\n"
    )


def test_cdr_list_as_table_and_json(run: Any, tmp_path: Path) -> None:
    ok(run("tenant", "add", "acme"))
    store = Store.for_data_dir(tmp_path / "data")
    tenant_id = store.list_tenants()[0].id
    store.write_cdr(
        CdrRec(
            tenant_id=tenant_id,
            call_id="abc@host",
            from_number="1001",
            to_number="1002",
            direction="internal",
            trunk_id=None,
            started_at=1_790_000_000.0,
            answered_at=1_790_000_002.0,
            ended_at=1_790_000_044.0,
            billable_s=42,
            hangup_cause="normal clearing",
            hangup_status=None,
            hangup_by="callee",
        )
    )
    store.close()
    [row] = json.loads(ok(run("cdr", "list", "--json")))
    assert row["tenant"] == "acme" and row["billable_s"] == 42 and row["hangup_by"] == "callee"
    assert row["started_at"] == 1_790_000_000.0
    table = ok(run("cdr", "list", "--tenant", "acme")).splitlines()
    assert "2026-09-21 14:13:20Z" in table[1] and "42" in table[1]


def test_registrations_list_is_empty_then_shows_nothing_expired(run: Any) -> None:
    assert ok(run("registrations", "list")).split() == [
        "TENANT",
        "EXTENSION",
        "CONTACT",
        "SOURCE",
        "EXPIRES",
        "IN",
        "(s)",
        "USER",
        "AGENT",
    ]


def test_migrate_creates_the_store_in_the_data_dir(run: Any, tmp_path: Path) -> None:
    assert "is up to date" in ok(run("migrate"))
    assert (tmp_path / "data" / "callplane.db").exists()


def test_db_url_option_overrides_the_data_dir(run: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    ok(run("--db-url", url, "tenant", "add", "acme"))
    assert (tmp_path / "elsewhere.db").exists() and not (tmp_path / "data").exists()


def test_bad_db_url_is_a_clean_error(run: Any) -> None:
    result = run("--db-url", "not a url", "tenant", "list")
    assert result.exit_code == 1 and result.stderr.startswith("error: malformed database URL")


def test_serve_hands_every_option_to_the_server(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callplane.pbx import server

    received: list[Any] = []
    monkeypatch.setattr(server, "run_server", received.append)
    ok(
        run(
            "serve", "--sip-port", "5070", "--no-demo", "--flood-max-requests", "5",
            "--digest-algorithms", "MD5",
        )
    )  # fmt: skip
    assert received == [
        server.ServeOptions(
            data_dir=tmp_path / "data",
            db_url=None,
            sip_host="0.0.0.0",
            sip_port=5070,
            demo=False,
            flood_max_requests=5,
            flood_window_s=2.0,
            flood_block_s=60.0,
            nonce_ttl_s=300,
            digest_algorithms=("MD5",),
            log_level="INFO",
        )
    ]


def test_python_dash_m_runs_the_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "callplane", "--data-dir", str(tmp_path), "tenant", "list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["ID", "NAME"]
