"""Reads and writes of the store, one function per operation on an open `Session`.

Every value from an operator passes through here, so the checks (enumerations, E.164 numbers,
references between rows) live in one place whether it came from the CLI or a config file.
`Store` (in `db.py`) opens the session and commits; the config import runs many of these in one
transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from callplane.core.dialplan import DialPlan
from callplane.store import records
from callplane.store.errors import AlreadyExists, InvalidValue, NotFound
from callplane.store.models import Cdr, Did, Extension, Registration, Tenant, Trunk
from callplane.store.phone import is_country, to_e164
from callplane.store.records import (
    AUTH_MODES,
    CALLER_ID_MODES,
    DESTINATION_TYPES,
    DIRECTIONS,
    HANGUP_SIDES,
    NUMBER_FORMATS,
    TRANSPORTS,
    CdrRec,
    DidRec,
    Directory,
    ExtensionRec,
    RegistrationRec,
    TenantRec,
    TrunkRec,
)

MIN_EXTENSION_PASSWORD_LEN = 6  # refuses the trivially guessed ("", "1234") SIP scanners try first
MAX_RING_TIMEOUT_S = 600  # beyond 10 minutes of ringing nobody answers; catches a typo in ms
MIN_REGISTER_EXPIRES_S = 60  # RFC 3261 §10.2.8: registrars commonly answer 423 below this
MAX_REGISTER_EXPIRES_S = 86_400  # a day; providers drop bindings older than that anyway
MAX_PORT = 65_535
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # fits a shell argument and a URL
EXTENSION_PATTERN = re.compile(r"^[0-9]+$")  # dialable from any keypad
SOURCE_PATTERN = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]+))?$")
DEFAULT_COUNTRY = "FR"
DEFAULT_TIMEZONE = "Europe/Paris"


def check_name(kind: str, name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidValue(
            f"{kind} name '{name}' must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_choice(field: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise InvalidValue(f"{field} must be one of {', '.join(choices)}, not '{value}'")
    return value


def check_range(field: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidValue(f"{field} must be between {low} and {high}, not {value}")
    return value


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidValue(
            f"unknown time zone '{name}' (use an IANA name like Europe/Paris)"
        ) from exc
    return name


def check_source(source: str) -> str:
    """An inbound source is "host" (any port) or "host:port"; IPv6 hosts in brackets."""
    match = SOURCE_PATTERN.match(source)
    if match is None:
        raise InvalidValue(f"inbound source '{source}' must be 'host' or 'host:port'")
    port = match.group("port")
    if port is not None:
        check_range(f"port of inbound source '{source}'", int(port), 1, MAX_PORT)
    return source


# ---- conversions to records -------------------------------------------------------------------


def tenant_rec(row: Tenant) -> TenantRec:
    return TenantRec(
        id=row.id,
        name=row.name,
        domain=row.domain,
        country=row.country,
        timezone=row.timezone,
        is_default=row.is_default,
        dial_plan=DialPlan(
            country=row.country,
            extension_digits=(row.extension_min_digits, row.extension_max_digits),
            allow_national=row.allow_national,
            allow_mobile=row.allow_mobile,
            allow_international=row.allow_international,
            allow_premium=row.allow_premium,
            allow_emergency=row.allow_emergency,
            external_prefix=row.external_prefix,
        ),
    )


def extension_rec(row: Extension) -> ExtensionRec:
    return ExtensionRec(
        id=row.id,
        tenant_id=row.tenant_id,
        number=row.number,
        password=row.password,
        display_name=row.display_name,
        ring_timeout_s=row.ring_timeout_s,
        caller_id_number=row.caller_id_number,
        enabled=row.enabled,
    )


def effective_sources(row: Trunk) -> tuple[str, ...]:
    """The sources given by the operator, else host:port (plus the bare host in register mode)."""
    if row.inbound_sources:
        return tuple(row.inbound_sources)
    host = f"[{row.host}]" if ":" in row.host else row.host
    if row.auth_mode == "register":
        return (f"{host}:{row.port}", host)
    return (f"{host}:{row.port}",)


def trunk_rec(row: Trunk) -> TrunkRec:
    return TrunkRec(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        host=row.host,
        port=row.port,
        transport=row.transport,
        auth_mode=row.auth_mode,
        username=row.username,
        password=row.password,
        auth_username=row.auth_username,
        register_expires_s=row.register_expires_s,
        inbound_sources=effective_sources(row),
        caller_id_mode=row.caller_id_mode,
        caller_id_number=row.caller_id_number,
        number_format=row.number_format,
        enabled=row.enabled,
    )


def did_rec(row: Did) -> DidRec:
    return DidRec(
        id=row.id,
        tenant_id=row.tenant_id,
        trunk_id=row.trunk_id,
        number=row.number,
        destination_type=row.destination_type,
        destination=row.destination,
    )


def registration_rec(row: Registration) -> RegistrationRec:
    return RegistrationRec(
        extension_id=row.extension_id,
        tenant_id=row.tenant_id,
        aor=row.aor,
        contact=row.contact,
        transport=row.transport,
        source_host=row.source_host,
        source_port=row.source_port,
        expires_at=row.expires_at,
        call_id=row.call_id,
        cseq=row.cseq,
        user_agent=row.user_agent,
        instance_id=row.instance_id,
    )


def cdr_rec(row: Cdr) -> CdrRec:
    return CdrRec(
        tenant_id=row.tenant_id,
        call_id=row.call_id,
        from_number=row.from_number,
        to_number=row.to_number,
        direction=row.direction,
        trunk_id=row.trunk_id,
        started_at=row.started_at,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        billable_s=row.billable_s,
        hangup_cause=row.hangup_cause,
        hangup_status=row.hangup_status,
        hangup_by=row.hangup_by,
    )


# ---- tenants ----------------------------------------------------------------------------------


def find_tenant(session: Session, name: str) -> Tenant:
    row = session.scalar(select(Tenant).where(Tenant.name == name))
    if row is None:
        raise NotFound(f"no tenant named '{name}'")
    return row


def put_tenant(
    session: Session,
    name: str,
    *,
    domain: str | None = None,
    country: str = DEFAULT_COUNTRY,
    timezone: str = DEFAULT_TIMEZONE,
    is_default: bool = False,
    dial_plan: DialPlan | None = None,
    create_only: bool = True,
) -> Tenant:
    """Create the tenant, or (when `create_only` is false) update the one with that name."""
    check_name("tenant", name)
    country = country.upper()
    if not is_country(country):
        raise InvalidValue(f"unknown country '{country}' (use an ISO 3166 code like FR or US)")
    check_timezone(timezone)
    domain = domain.strip().lower() if domain else None
    plan = dial_plan if dial_plan is not None else DialPlan(country=country)
    low, high = plan.extension_digits
    if not 1 <= low <= high:
        raise InvalidValue(f"extension digits must be a range like 3-6, not {low}-{high}")
    if not (plan.external_prefix == "" or plan.external_prefix.isdigit()):
        raise InvalidValue(f"external prefix must be digits, not '{plan.external_prefix}'")

    row = session.scalar(select(Tenant).where(Tenant.name == name))
    if row is not None and create_only:
        raise AlreadyExists(f"tenant '{name}' already exists")
    if domain is not None:
        other = session.scalar(select(Tenant).where(Tenant.domain == domain))
        if other is not None and other is not row:
            raise AlreadyExists(f"domain '{domain}' already belongs to tenant '{other.name}'")
    if is_default:
        for other in session.scalars(select(Tenant).where(Tenant.is_default.is_(True))):
            if other is not row:
                other.is_default = False
    if row is None:
        row = Tenant(name=name)
    row.domain = domain
    row.country = country
    row.timezone = timezone
    row.is_default = is_default
    row.extension_min_digits = low
    row.extension_max_digits = high
    row.allow_national = plan.allow_national
    row.allow_mobile = plan.allow_mobile
    row.allow_international = plan.allow_international
    row.allow_premium = plan.allow_premium
    row.allow_emergency = plan.allow_emergency
    row.external_prefix = plan.external_prefix
    session.add(row)
    session.flush()
    return row


def list_tenants(session: Session) -> list[TenantRec]:
    return [tenant_rec(r) for r in session.scalars(select(Tenant).order_by(Tenant.id))]


# ---- extensions -------------------------------------------------------------------------------


def put_extension(
    session: Session,
    tenant: Tenant,
    number: str,
    password: str,
    *,
    display_name: str | None = None,
    ring_timeout_s: int = records.DEFAULT_RING_TIMEOUT_S,
    caller_id_number: str | None = None,
    enabled: bool = True,
    create_only: bool = True,
) -> Extension:
    low, high = tenant.extension_min_digits, tenant.extension_max_digits
    if not EXTENSION_PATTERN.match(number) or not low <= len(number) <= high:
        raise InvalidValue(
            f"extension number '{number}' must be {low} to {high} digits (tenant '{tenant.name}')"
        )
    if len(password) < MIN_EXTENSION_PASSWORD_LEN:
        raise InvalidValue(
            f"password of extension {number} must have at least {MIN_EXTENSION_PASSWORD_LEN} "
            "characters"
        )
    check_range("ring timeout (s)", ring_timeout_s, 1, MAX_RING_TIMEOUT_S)
    cid = to_e164(caller_id_number, tenant.country) if caller_id_number else None
    row = session.scalar(
        select(Extension).where(Extension.tenant_id == tenant.id, Extension.number == number)
    )
    if row is not None and create_only:
        raise AlreadyExists(f"extension {number} already exists in tenant '{tenant.name}'")
    if row is None:
        row = Extension(tenant_id=tenant.id, number=number)
    row.password = password
    row.display_name = display_name or None
    row.ring_timeout_s = ring_timeout_s
    row.caller_id_number = cid
    row.enabled = enabled
    session.add(row)
    session.flush()
    return row


def list_extensions(session: Session, tenant: str | None = None) -> list[ExtensionRec]:
    query = select(Extension).order_by(Extension.tenant_id, Extension.number)
    if tenant is not None:
        query = query.where(Extension.tenant_id == find_tenant(session, tenant).id)
    return [extension_rec(r) for r in session.scalars(query)]


# ---- trunks -----------------------------------------------------------------------------------


def find_trunk(session: Session, tenant: Tenant, name: str) -> Trunk:
    row = session.scalar(select(Trunk).where(Trunk.tenant_id == tenant.id, Trunk.name == name))
    if row is None:
        raise NotFound(f"no trunk named '{name}' in tenant '{tenant.name}'")
    return row


def put_trunk(
    session: Session,
    tenant: Tenant,
    name: str,
    host: str,
    *,
    port: int = records.DEFAULT_SIP_PORT,
    transport: str = "UDP",
    auth_mode: str = "ip",
    username: str | None = None,
    password: str | None = None,
    auth_username: str | None = None,
    register_expires_s: int = records.DEFAULT_REGISTER_EXPIRES_S,
    inbound_sources: Sequence[str] | None = None,
    caller_id_mode: str = "extension",
    caller_id_number: str | None = None,
    number_format: str = "e164",
    enabled: bool = True,
    create_only: bool = True,
) -> Trunk:
    check_name("trunk", name)
    host = host.strip().strip("[]")
    if not host:
        raise InvalidValue(f"trunk '{name}' needs a host")
    check_range("port", port, 1, MAX_PORT)
    transport = check_choice("transport", transport.upper(), TRANSPORTS)
    auth_mode = check_choice("auth", auth_mode.lower(), AUTH_MODES)
    if auth_mode == "register" and not (username and password):
        raise InvalidValue(f"trunk '{name}' registers, so it needs a username and a password")
    check_range(
        "register expires (s)", register_expires_s, MIN_REGISTER_EXPIRES_S, MAX_REGISTER_EXPIRES_S
    )
    sources = [check_source(s.strip()) for s in inbound_sources or ()]
    caller_id_mode = check_choice("caller ID mode", caller_id_mode.lower(), CALLER_ID_MODES)
    cid = to_e164(caller_id_number, tenant.country) if caller_id_number else None
    if caller_id_mode == "fixed" and cid is None:
        raise InvalidValue(f"trunk '{name}' has caller ID mode 'fixed' but no caller ID number")
    number_format = check_choice("number format", number_format.lower(), NUMBER_FORMATS)

    row = session.scalar(select(Trunk).where(Trunk.tenant_id == tenant.id, Trunk.name == name))
    if row is not None and create_only:
        raise AlreadyExists(f"trunk '{name}' already exists in tenant '{tenant.name}'")
    if row is None:
        row = Trunk(tenant_id=tenant.id, name=name)
    row.host = host
    row.port = port
    row.transport = transport
    row.auth_mode = auth_mode
    row.username = username or None
    row.password = password or None
    row.auth_username = auth_username or None
    row.register_expires_s = register_expires_s
    row.inbound_sources = sources or None
    row.caller_id_mode = caller_id_mode
    row.caller_id_number = cid
    row.number_format = number_format
    row.enabled = enabled
    session.add(row)
    session.flush()
    return row


def list_trunks(session: Session, tenant: str | None = None) -> list[TrunkRec]:
    query = select(Trunk).order_by(Trunk.id)
    if tenant is not None:
        query = query.where(Trunk.tenant_id == find_tenant(session, tenant).id)
    return [trunk_rec(r) for r in session.scalars(query)]


# ---- DIDs -------------------------------------------------------------------------------------


def put_did(
    session: Session,
    tenant: Tenant,
    trunk: str,
    number: str,
    *,
    destination: str,
    destination_type: str = "extension",
    create_only: bool = True,
) -> Did:
    """Route the public `number`, arriving on the tenant's `trunk`, to `destination`."""
    e164 = to_e164(number, tenant.country)
    trunk_row = find_trunk(session, tenant, trunk)
    check_choice("destination type", destination_type, DESTINATION_TYPES)
    target = session.scalar(
        select(Extension).where(Extension.tenant_id == tenant.id, Extension.number == destination)
    )
    if target is None:
        raise NotFound(f"no extension {destination} in tenant '{tenant.name}' for DID {e164}")
    row = session.scalar(select(Did).where(Did.number == e164))
    if row is not None and (create_only or row.tenant_id != tenant.id):
        owner = session.get_one(Tenant, row.tenant_id)
        raise AlreadyExists(f"DID {e164} already exists (tenant '{owner.name}')")
    if row is None:
        row = Did(number=e164, tenant_id=tenant.id)
    row.trunk_id = trunk_row.id
    row.destination_type = destination_type
    row.destination = destination
    session.add(row)
    session.flush()
    return row


def list_dids(session: Session, tenant: str | None = None) -> list[DidRec]:
    query = select(Did).order_by(Did.number)
    if tenant is not None:
        query = query.where(Did.tenant_id == find_tenant(session, tenant).id)
    return [did_rec(r) for r in session.scalars(query)]


# ---- the directory ----------------------------------------------------------------------------


def load_directory(session: Session) -> Directory:
    return Directory(
        tenants=tuple(list_tenants(session)),
        extensions=tuple(
            extension_rec(r) for r in session.scalars(select(Extension).order_by(Extension.id))
        ),
        trunks=tuple(list_trunks(session)),
        dids=tuple(did_rec(r) for r in session.scalars(select(Did).order_by(Did.id))),
    )


# ---- registrations ----------------------------------------------------------------------------


def save_registration(session: Session, reg: RegistrationRec) -> None:
    """Insert or refresh the binding of `reg.contact` to its extension (RFC 3261 §10.3 step 8)."""
    row = session.scalar(
        select(Registration).where(
            Registration.extension_id == reg.extension_id, Registration.contact == reg.contact
        )
    )
    if row is None:
        row = Registration(extension_id=reg.extension_id, contact=reg.contact)
    row.tenant_id = reg.tenant_id
    row.aor = reg.aor
    row.transport = reg.transport
    row.source_host = reg.source_host
    row.source_port = reg.source_port
    row.expires_at = reg.expires_at
    row.call_id = reg.call_id
    row.cseq = reg.cseq
    row.user_agent = reg.user_agent
    row.instance_id = reg.instance_id
    session.add(row)


def delete_registration(session: Session, extension_id: int, contact: str) -> None:
    session.execute(
        delete(Registration).where(
            Registration.extension_id == extension_id, Registration.contact == contact
        )
    )


def delete_registrations(session: Session, extension_id: int) -> None:
    session.execute(delete(Registration).where(Registration.extension_id == extension_id))


def load_registrations(session: Session, now: float) -> list[RegistrationRec]:
    query = (
        select(Registration)
        .where(Registration.expires_at > now)
        .order_by(Registration.extension_id, Registration.id)
    )
    return [registration_rec(r) for r in session.scalars(query)]


def purge_registrations(session: Session, now: float) -> int:
    expired = list(session.scalars(select(Registration.id).where(Registration.expires_at <= now)))
    if expired:
        session.execute(delete(Registration).where(Registration.id.in_(expired)))
    return len(expired)


# ---- call detail records ----------------------------------------------------------------------


def write_cdr(session: Session, cdr: CdrRec) -> None:
    write_cdrs(session, [cdr])


def write_cdrs(session: Session, cdrs: Sequence[CdrRec]) -> None:
    """Append CDR rows in one bulk INSERT (executemany): the PBX writes them in batches."""
    rows = []
    for cdr in cdrs:
        check_choice("direction", cdr.direction, DIRECTIONS)
        check_choice("hang-up side", cdr.hangup_by, HANGUP_SIDES)
        rows.append(
            {
                "tenant_id": cdr.tenant_id,
                "call_id": cdr.call_id,
                "from_number": cdr.from_number,
                "to_number": cdr.to_number,
                "direction": cdr.direction,
                "trunk_id": cdr.trunk_id,
                "started_at": cdr.started_at,
                "answered_at": cdr.answered_at,
                "ended_at": cdr.ended_at,
                "billable_s": cdr.billable_s,
                "hangup_cause": cdr.hangup_cause,
                "hangup_status": cdr.hangup_status,
                "hangup_by": cdr.hangup_by,
            }
        )
    if rows:
        session.execute(insert(Cdr), rows)


def list_cdrs(session: Session, *, tenant: str | None = None, limit: int = 100) -> list[CdrRec]:
    """The most recent CDRs first."""
    query = select(Cdr).order_by(Cdr.started_at.desc(), Cdr.id.desc()).limit(limit)
    if tenant is not None:
        query = query.where(Cdr.tenant_id == find_tenant(session, tenant).id)
    return [cdr_rec(r) for r in session.scalars(query)]
