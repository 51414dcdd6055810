"""The store on a real PostgreSQL: the same Alembic migration, rows, registrations and CDRs.

A private server is started with Debian's `initdb`/`pg_ctl` in a temporary directory on a free
port of 127.0.0.1 and stopped at the end. PostgreSQL refuses to run as root, so under root the
server runs as the `postgres` system user the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from callplane.store import AlreadyExists, Store
from callplane.store.config_file import import_config
from callplane.store.models import Base
from callplane.store.records import CdrRec, RegistrationRec

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_START_TIMEOUT_S = 60  # pg_ctl -w waits at most this for the server to accept connections
PG_SYSTEM_USER = "postgres"  # created by Debian's postgresql-common
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "configuration-example.yaml"
T0 = 1_790_000_000.5


def _pg_bin() -> Path | None:
    found = sorted(glob.glob(f"{PG_BIN_GLOB}/initdb"))
    return Path(found[-1]).parent if found else None


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivatePostgres:
    """One throw-away PostgreSQL cluster, trust authentication, listening on 127.0.0.1 only."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="callplane-pg-"))
        self.data = self.root / "data"
        self.port = _free_tcp_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam(PG_SYSTEM_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", PG_SYSTEM_USER, "--"]

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self.as_user, *args], capture_output=True, text=True, check=False, timeout=120
        )
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}{tail}")

    def start(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "callplane",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-t",
            str(PG_START_TIMEOUT_S),
            "-w",
            "start",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
            )
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql://callplane@127.0.0.1:{self.port}/postgres"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        message = (
            "PostgreSQL is not installed (Debian package postgresql; run scripts/install-test-deps)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " -- required under CI=true", pytrace=False)
        pytest.skip(message)
    server = PrivatePostgres(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def store(postgres: PrivatePostgres) -> Iterator[Store]:
    s = Store(postgres.url)
    with s.engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    s.migrate()
    yield s
    s.close()


def test_migration_runs_and_matches_the_models_on_postgresql(store: Store) -> None:
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0001"
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert diff == []


def test_rows_registrations_and_cdrs_on_postgresql(store: Store) -> None:
    counts = import_config(store, EXAMPLE)
    assert counts == {"tenants": 1, "extensions": 3, "trunks": 2, "dids": 2}
    assert import_config(store, EXAMPLE) == counts
    with pytest.raises(AlreadyExists):
        store.add_extension("acme", "1001", "another-pw")

    d = store.load_directory()
    tenant = d.tenant_by_domain("pbx.acme.example")
    assert tenant is not None
    alice = d.extension(tenant.id, "1001")
    did = d.did("+33123456789")
    assert alice is not None and did is not None and did.destination == "1001"
    provider = d.trunk_by_id(did.trunk_id)
    assert provider is not None
    assert provider.inbound_sources == ("192.0.2.10", "192.0.2.11:5060")

    reg = RegistrationRec(
        extension_id=alice.id,
        tenant_id=tenant.id,
        aor="sip:1001@pbx.acme.example",
        contact="sip:1001@198.51.100.7:5062;transport=udp",
        transport="UDP",
        source_host="198.51.100.7",
        source_port=5062,
        expires_at=T0 + 600,
        call_id="reg-1",
        cseq=7,
        user_agent="baresip",
        instance_id="<urn:uuid:00000000-0000-0000-0000-000000000001>",
    )
    store.save_registration(reg)
    store.save_registration(reg)
    assert store.load_registrations(T0) == [reg]
    assert store.purge_registrations(T0 + 601) == 1

    record = CdrRec(
        tenant_id=tenant.id,
        call_id="call-1@pbx",
        from_number="+33987654321",
        to_number="1001",
        direction="inbound",
        trunk_id=provider.id,
        started_at=T0,
        answered_at=T0 + 4.25,
        ended_at=T0 + 46.25,
        billable_s=42,
        hangup_cause="normal clearing",
        hangup_status=None,
        hangup_by="caller",
    )
    store.write_cdr(record)
    assert store.list_cdrs(tenant="acme") == [record]
