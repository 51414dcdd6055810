"""The store: one SQLAlchemy engine on SQLite (default, in the data directory) or PostgreSQL.

SQLite runs in WAL mode with `synchronous=FULL`: WAL lets the PBX read while a CDR is written,
and FULL syncs the log at every commit, so a CDR is on disk when `write_cdr` returns even across a
power cut (NORMAL would only survive a crash of the process). The cost, one fsync per call end, is
far below any call rate a single node handles.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from callplane.core.dialplan import DialPlan
from callplane.store import repository as repo
from callplane.store.errors import InvalidValue
from callplane.store.records import (
    DEFAULT_REGISTER_EXPIRES_S,
    DEFAULT_RING_TIMEOUT_S,
    DEFAULT_SIP_PORT,
    CdrRec,
    DidRec,
    Directory,
    ExtensionRec,
    RegistrationRec,
    TenantRec,
    TrunkRec,
)

log = logging.getLogger(__name__)

DB_FILE_NAME = "callplane.db"
SQLITE_BUSY_TIMEOUT_MS = 5_000  # a CLI command and the running server may write at the same time


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for `url`; PostgreSQL URLs without a driver get psycopg (version 3)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidValue(f"malformed database URL '{url}'") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config() -> Config:
    """Alembic's configuration pointing at the migrations shipped inside the package."""
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("callplane.store").joinpath("migrations"))
    )
    return config


class Store:
    """Everything the PBX and the CLI read and write; rows go out as frozen records."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def for_data_dir(cls, data_dir: Path, url: str | None = None) -> Store:
        """The store at `url`, else SQLite in `data_dir` (created if absent)."""
        if url is None:
            data_dir.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{data_dir.resolve() / DB_FILE_NAME}"
        return cls(url)

    def migrate(self) -> None:
        """Bring the schema to the newest revision (`alembic upgrade head`); idempotent."""
        config = alembic_config()
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    # ---- directory: tenants, extensions, trunks, DIDs -----------------------------------------

    def load_directory(self) -> Directory:
        with self.transaction() as s:
            return repo.load_directory(s)

    def add_tenant(
        self,
        name: str,
        *,
        domain: str | None = None,
        country: str = repo.DEFAULT_COUNTRY,
        timezone: str = repo.DEFAULT_TIMEZONE,
        is_default: bool = False,
        dial_plan: DialPlan | None = None,
    ) -> TenantRec:
        with self.transaction() as s:
            row = repo.put_tenant(
                s,
                name,
                domain=domain,
                country=country,
                timezone=timezone,
                is_default=is_default,
                dial_plan=dial_plan,
            )
            return repo.tenant_rec(row)

    def list_tenants(self) -> list[TenantRec]:
        with self.transaction() as s:
            return repo.list_tenants(s)

    def add_extension(
        self,
        tenant: str,
        number: str,
        password: str,
        *,
        display_name: str | None = None,
        ring_timeout_s: int = DEFAULT_RING_TIMEOUT_S,
        caller_id_number: str | None = None,
        enabled: bool = True,
    ) -> ExtensionRec:
        with self.transaction() as s:
            row = repo.put_extension(
                s,
                repo.find_tenant(s, tenant),
                number,
                password,
                display_name=display_name,
                ring_timeout_s=ring_timeout_s,
                caller_id_number=caller_id_number,
                enabled=enabled,
            )
            return repo.extension_rec(row)

    def list_extensions(self, tenant: str | None = None) -> list[ExtensionRec]:
        with self.transaction() as s:
            return repo.list_extensions(s, tenant)

    def add_trunk(
        self,
        tenant: str,
        name: str,
        host: str,
        *,
        port: int = DEFAULT_SIP_PORT,
        transport: str = "UDP",
        auth_mode: str = "ip",
        username: str | None = None,
        password: str | None = None,
        auth_username: str | None = None,
        register_expires_s: int = DEFAULT_REGISTER_EXPIRES_S,
        inbound_sources: Sequence[str] | None = None,
        caller_id_mode: str = "extension",
        caller_id_number: str | None = None,
        number_format: str = "e164",
        enabled: bool = True,
    ) -> TrunkRec:
        with self.transaction() as s:
            row = repo.put_trunk(
                s,
                repo.find_tenant(s, tenant),
                name,
                host,
                port=port,
                transport=transport,
                auth_mode=auth_mode,
                username=username,
                password=password,
                auth_username=auth_username,
                register_expires_s=register_expires_s,
                inbound_sources=inbound_sources,
                caller_id_mode=caller_id_mode,
                caller_id_number=caller_id_number,
                number_format=number_format,
                enabled=enabled,
            )
            return repo.trunk_rec(row)

    def list_trunks(self, tenant: str | None = None) -> list[TrunkRec]:
        with self.transaction() as s:
            return repo.list_trunks(s, tenant)

    def add_did(
        self,
        tenant: str,
        trunk: str,
        number: str,
        *,
        destination: str,
        destination_type: str = "extension",
    ) -> DidRec:
        with self.transaction() as s:
            row = repo.put_did(
                s,
                repo.find_tenant(s, tenant),
                trunk,
                number,
                destination=destination,
                destination_type=destination_type,
            )
            return repo.did_rec(row)

    def list_dids(self, tenant: str | None = None) -> list[DidRec]:
        with self.transaction() as s:
            return repo.list_dids(s, tenant)

    # ---- registrations ------------------------------------------------------------------------

    def save_registration(self, reg: RegistrationRec) -> None:
        with self.transaction() as s:
            repo.save_registration(s, reg)

    def delete_registration(self, extension_id: int, contact: str) -> None:
        with self.transaction() as s:
            repo.delete_registration(s, extension_id, contact)

    def delete_registrations(self, extension_id: int) -> None:
        with self.transaction() as s:
            repo.delete_registrations(s, extension_id)

    def load_registrations(self, now: float) -> list[RegistrationRec]:
        """The bindings still valid at `now` (epoch seconds)."""
        with self.transaction() as s:
            return repo.load_registrations(s, now)

    def purge_registrations(self, now: float) -> int:
        """Delete the bindings expired at `now`; returns how many."""
        with self.transaction() as s:
            return repo.purge_registrations(s, now)

    # ---- call detail records ------------------------------------------------------------------

    def write_cdr(self, cdr: CdrRec) -> None:
        """Append one CDR in its own committed transaction: durable when this returns."""
        with self.transaction() as s:
            repo.write_cdr(s, cdr)

    def list_cdrs(self, *, tenant: str | None = None, limit: int = 100) -> list[CdrRec]:
        with self.transaction() as s:
            return repo.list_cdrs(s, tenant=tenant, limit=limit)
