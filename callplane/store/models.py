"""SQLAlchemy 2 typed ORM models; every row that belongs to a client company carries `tenant_id`.

The initial Alembic migration (`migrations/versions/`) creates exactly these tables; a test compares
the two so they cannot drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}  # stable constraint names, so later migrations can drop them by name on both databases

NAME_LEN = (
    64  # tenant, trunk and user-facing names: long enough for a company name, short on screens
)
NUMBER_LEN = 32  # E.164 is at most 15 digits (ITU-T E.164 §6.1); room for '+' and extension digits
HOST_LEN = 255  # RFC 1035 §2.3.4: a domain name is at most 255 octets
SECRET_LEN = 128  # SIP digest passwords and provider secrets
URI_LEN = 1024  # a Contact URI with parameters (RFC 3261 §20.10); phones add long instance ids
TOKEN_LEN = 255  # Call-ID, User-Agent, hang-up cause text


class EpochTime(TypeDecorator[float]):
    """Epoch seconds (float) in Python, a UTC `timestamp with time zone` in the database.

    SQLite hands back naive datetimes; they were written in UTC, so they are read as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return datetime.fromtimestamp(value, tz=UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> float | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        stamp: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return stamp.timestamp()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), unique=True)
    domain: Mapped[str | None] = mapped_column(String(HOST_LEN), unique=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    country: Mapped[str] = mapped_column(String(2))
    timezone: Mapped[str] = mapped_column(String(NAME_LEN))
    extension_min_digits: Mapped[int] = mapped_column(Integer)
    extension_max_digits: Mapped[int] = mapped_column(Integer)
    allow_national: Mapped[bool] = mapped_column(Boolean)
    allow_mobile: Mapped[bool] = mapped_column(Boolean)
    allow_international: Mapped[bool] = mapped_column(Boolean)
    allow_premium: Mapped[bool] = mapped_column(Boolean)
    allow_emergency: Mapped[bool] = mapped_column(Boolean)
    external_prefix: Mapped[str] = mapped_column(String(8))


class Extension(Base):
    __tablename__ = "extensions"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(NUMBER_LEN))
    password: Mapped[str] = mapped_column(String(SECRET_LEN))
    display_name: Mapped[str | None] = mapped_column(String(NAME_LEN))
    ring_timeout_s: Mapped[int] = mapped_column(Integer)
    caller_id_number: Mapped[str | None] = mapped_column(String(NUMBER_LEN))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class Trunk(Base):
    __tablename__ = "trunks"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    host: Mapped[str] = mapped_column(String(HOST_LEN))
    port: Mapped[int] = mapped_column(Integer)
    transport: Mapped[str] = mapped_column(String(8))
    auth_mode: Mapped[str] = mapped_column(String(16))
    username: Mapped[str | None] = mapped_column(String(NAME_LEN))
    password: Mapped[str | None] = mapped_column(String(SECRET_LEN))
    auth_username: Mapped[str | None] = mapped_column(String(NAME_LEN))
    register_expires_s: Mapped[int] = mapped_column(Integer)
    inbound_sources: Mapped[list[str] | None] = mapped_column(JSON)
    caller_id_mode: Mapped[str] = mapped_column(String(16))
    caller_id_number: Mapped[str | None] = mapped_column(String(NUMBER_LEN))
    number_format: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class Did(Base):
    __tablename__ = "dids"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    trunk_id: Mapped[int] = mapped_column(ForeignKey("trunks.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(NUMBER_LEN), unique=True)
    destination_type: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(NAME_LEN))


class Registration(Base):
    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("extension_id", "contact"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    extension_id: Mapped[int] = mapped_column(ForeignKey("extensions.id", ondelete="CASCADE"))
    aor: Mapped[str] = mapped_column(String(URI_LEN))
    contact: Mapped[str] = mapped_column(String(URI_LEN))
    transport: Mapped[str] = mapped_column(String(8))
    source_host: Mapped[str] = mapped_column(String(HOST_LEN))
    source_port: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[float] = mapped_column(EpochTime, index=True)
    call_id: Mapped[str] = mapped_column(String(TOKEN_LEN))
    cseq: Mapped[int] = mapped_column(Integer)
    user_agent: Mapped[str | None] = mapped_column(String(TOKEN_LEN))
    instance_id: Mapped[str | None] = mapped_column(String(TOKEN_LEN))


class Cdr(Base):
    __tablename__ = "cdrs"
    __table_args__ = (Index("ix_cdrs_tenant_id_started_at", "tenant_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(String(TOKEN_LEN), index=True)
    from_number: Mapped[str] = mapped_column(String(TOKEN_LEN))
    to_number: Mapped[str] = mapped_column(String(TOKEN_LEN))
    direction: Mapped[str] = mapped_column(String(16))
    trunk_id: Mapped[int | None] = mapped_column(ForeignKey("trunks.id", ondelete="SET NULL"))
    started_at: Mapped[float] = mapped_column(EpochTime)
    answered_at: Mapped[float | None] = mapped_column(EpochTime)
    ended_at: Mapped[float] = mapped_column(EpochTime)
    billable_s: Mapped[int] = mapped_column(Integer)
    hangup_cause: Mapped[str] = mapped_column(Text)
    hangup_status: Mapped[int | None] = mapped_column(Integer)
    hangup_by: Mapped[str] = mapped_column(String(16))
