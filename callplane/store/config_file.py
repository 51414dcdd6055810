"""Import tenants, extensions, trunks and DIDs from a YAML file, idempotently.

The file is parsed into pydantic models first (types, enumerations, unknown keys), then applied in
one transaction through the same repository checks the CLI uses (E.164 numbers in the tenant's
country, references to extensions and trunks). Every fault is reported with its path, as in
`acme.yaml: tenants.0.trunks.1.port: Input should be less than or equal to 65535`, and nothing is
written unless the whole file is good. Importing the same file twice leaves the same rows; changed
fields are updated; rows absent from the file are left alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from callplane.core.dialplan import DialPlan
from callplane.store import repository as repo
from callplane.store.db import Store
from callplane.store.errors import ConfigFileError, StoreError
from callplane.store.records import (
    DEFAULT_REGISTER_EXPIRES_S,
    DEFAULT_RING_TIMEOUT_S,
    DEFAULT_SIP_PORT,
)

Port = Annotated[int, Field(ge=1, le=repo.MAX_PORT)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class DialPlanConfig(_Model):
    """What a tenant's phones may dial; the country comes from the tenant."""

    extension_digits: tuple[int, int] = (3, 6)
    allow_national: bool = True
    allow_mobile: bool = True
    allow_international: bool = False
    allow_premium: bool = False
    allow_emergency: bool = True
    external_prefix: str = ""


class ExtensionConfig(_Model):
    number: str
    password: str
    name: str | None = None
    ring_timeout_s: int = DEFAULT_RING_TIMEOUT_S
    caller_id: str | None = None
    enabled: bool = True


class CallerIdConfig(_Model):
    mode: Literal["extension", "fixed", "passthrough"] = "extension"
    number: str | None = None


class DidConfig(_Model):
    number: str
    extension: str


class TrunkConfig(_Model):
    name: str
    host: str
    port: Port = DEFAULT_SIP_PORT
    transport: Literal["UDP", "TCP"] = "UDP"
    auth: Literal["register", "ip"] = "ip"
    username: str | None = None
    password: str | None = None
    auth_username: str | None = None
    register_expires_s: int = DEFAULT_REGISTER_EXPIRES_S
    inbound_sources: list[str] | None = None
    caller_id: CallerIdConfig = CallerIdConfig()
    number_format: Literal["e164", "national"] = "e164"
    enabled: bool = True
    dids: list[DidConfig] = []

    @field_validator("transport", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("auth", "number_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class TenantConfig(_Model):
    name: str
    domain: str | None = None
    default: bool = False
    country: str = repo.DEFAULT_COUNTRY
    timezone: str = repo.DEFAULT_TIMEZONE
    dial_plan: DialPlanConfig = DialPlanConfig()
    extensions: list[ExtensionConfig] = []
    trunks: list[TrunkConfig] = []


class ConfigFile(_Model):
    tenants: list[TenantConfig] = []


def _loc(parts: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in parts) or "(top)"


def parse_config(text: str, source: str) -> ConfigFile:
    """Parse YAML `text` (named `source` in errors) into a `ConfigFile`; raise `ConfigFileError`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(top)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigFileError([f"{source}: {where}: {problem}"]) from exc
    if data is None:
        data = {}
    try:
        return ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigFileError(
            [f"{source}: {_loc(err['loc'])}: {err['msg']}" for err in exc.errors()]
        ) from exc


def _dial_plan(tenant: TenantConfig) -> DialPlan:
    plan = tenant.dial_plan
    return DialPlan(
        country=tenant.country.upper(),
        extension_digits=plan.extension_digits,
        allow_national=plan.allow_national,
        allow_mobile=plan.allow_mobile,
        allow_international=plan.allow_international,
        allow_premium=plan.allow_premium,
        allow_emergency=plan.allow_emergency,
        external_prefix=plan.external_prefix,
    )


def apply_config(store: Store, config: ConfigFile, source: str) -> dict[str, int]:
    """Upsert everything in `config` in one transaction; returns how many rows of each kind."""
    problems: list[str] = []
    counts = {"tenants": 0, "extensions": 0, "trunks": 0, "dids": 0}

    def attempt(path: str, action: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return action(*args, **kwargs)
        except StoreError as exc:
            problems.append(f"{source}: {path}: {exc}")
            return None

    with store.transaction() as s:
        for ti, t in enumerate(config.tenants):
            where = f"tenants.{ti}"
            tenant = attempt(
                where,
                repo.put_tenant,
                s,
                t.name,
                domain=t.domain,
                country=t.country,
                timezone=t.timezone,
                is_default=t.default,
                dial_plan=_dial_plan(t),
                create_only=False,
            )
            if tenant is None:
                continue
            counts["tenants"] += 1
            for ei, e in enumerate(t.extensions):
                done = attempt(
                    f"{where}.extensions.{ei}",
                    repo.put_extension,
                    s,
                    tenant,
                    e.number,
                    e.password,
                    display_name=e.name,
                    ring_timeout_s=e.ring_timeout_s,
                    caller_id_number=e.caller_id,
                    enabled=e.enabled,
                    create_only=False,
                )
                counts["extensions"] += done is not None
            for ki, k in enumerate(t.trunks):
                trunk = attempt(
                    f"{where}.trunks.{ki}",
                    repo.put_trunk,
                    s,
                    tenant,
                    k.name,
                    k.host,
                    port=k.port,
                    transport=k.transport,
                    auth_mode=k.auth,
                    username=k.username,
                    password=k.password,
                    auth_username=k.auth_username,
                    register_expires_s=k.register_expires_s,
                    inbound_sources=k.inbound_sources,
                    caller_id_mode=k.caller_id.mode,
                    caller_id_number=k.caller_id.number,
                    number_format=k.number_format,
                    enabled=k.enabled,
                    create_only=False,
                )
                if trunk is None:
                    continue
                counts["trunks"] += 1
                for di, d in enumerate(k.dids):
                    done = attempt(
                        f"{where}.trunks.{ki}.dids.{di}",
                        repo.put_did,
                        s,
                        tenant,
                        k.name,
                        d.number,
                        destination=d.extension,
                        destination_type="extension",
                        create_only=False,
                    )
                    counts["dids"] += done is not None
        if problems:
            raise ConfigFileError(problems)
    return counts


def import_config(store: Store, path: Path) -> dict[str, int]:
    """Read, check and apply the YAML file at `path`; raise `ConfigFileError` naming each fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    return apply_config(store, parse_config(text, str(path)), str(path))
