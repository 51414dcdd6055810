"""The `callplane` command: manage tenants, extensions, trunks and DIDs, read CDRs, run the server.

Errors end the command with status 1 and one line per fault on stderr, never a traceback; usage
errors end with status 2 (click's convention).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from callplane.core.dialplan import DialPlan
from callplane.store.config_file import import_config
from callplane.store.db import Store
from callplane.store.errors import InvalidValue, StoreError
from callplane.store.records import (
    DEFAULT_REGISTER_EXPIRES_S,
    DEFAULT_RING_TIMEOUT_S,
    DEFAULT_SIP_PORT,
    TenantRec,
)
from callplane.store.repository import DEFAULT_COUNTRY, DEFAULT_TIMEZONE

DEFAULT_DATA_DIR = "callplane-data"
GENERATED_PASSWORD_BYTES = 9  # 12 url-safe characters, as the demo extensions get

app = typer.Typer(
    name="callplane",
    help="Callplane: a SIP PBX and contact center.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
tenant_app = typer.Typer(help="Client companies, each with its SIP domain and dial plan.")
extension_app = typer.Typer(help="SIP accounts of a tenant (phones).")
trunk_app = typer.Typer(help="Provider accounts carrying calls to and from the public network.")
did_app = typer.Typer(help="Public numbers routed to extensions.")
cdr_app = typer.Typer(help="Call detail records.")
registrations_app = typer.Typer(help="Phones currently registered.")
app.add_typer(tenant_app, name="tenant")
app.add_typer(extension_app, name="extension")
app.add_typer(trunk_app, name="trunk")
app.add_typer(did_app, name="did")
app.add_typer(cdr_app, name="cdr")
app.add_typer(registrations_app, name="registrations")


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    data_dir: Path
    db_url: str | None


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _options(ctx: typer.Context) -> GlobalOptions:
    options = ctx.find_root().obj
    assert isinstance(options, GlobalOptions)
    return options


@contextmanager
def _store(ctx: typer.Context) -> Iterator[Store]:
    """The migrated store; any store or database fault in the block ends the command with 1."""
    options = _options(ctx)
    try:
        store = Store.for_data_dir(options.data_dir, options.db_url)
        try:
            store.migrate()
            yield store
        finally:
            store.close()
    except StoreError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        _fail(f"database: {str(cause).splitlines()[0]}")
    except OSError as exc:
        _fail(f"{exc.filename or options.data_dir}: {exc.strerror or exc}")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print `rows` under `headers` in columns aligned on the widest cell."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for line in [list(headers), *cells]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _tenant_names(store: Store) -> dict[int, str]:
    return {t.id: t.name for t in store.list_tenants()}


def _resolve_tenant(store: Store, tenant: str | None) -> str:
    """The tenant named, else the default one (the only tenant, or the one flagged default)."""
    if tenant is not None:
        return tenant
    default = store.load_directory().default_tenant()
    if default is None:
        raise InvalidValue("several tenants and none is the default: give --tenant")
    return default.name


def _dial_plan_text(t: TenantRec) -> str:
    plan = t.dial_plan
    low, high = plan.extension_digits
    allowed = [
        name
        for name, on in (
            ("national", plan.allow_national),
            ("mobile", plan.allow_mobile),
            ("international", plan.allow_international),
            ("premium", plan.allow_premium),
            ("emergency", plan.allow_emergency),
        )
        if on
    ]
    prefix = f", prefix {plan.external_prefix}" if plan.external_prefix else ""
    return f"ext {low}-{high} digits; {'+'.join(allowed) or 'internal only'}{prefix}"


@app.callback()
def _global(
    ctx: typer.Context,
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir",
            envvar="CALLPLANE_DATA_DIR",
            help="Directory holding the SQLite store and other state.",
        ),
    ] = Path(DEFAULT_DATA_DIR),
    db_url: Annotated[
        str | None,
        typer.Option(
            "--db-url",
            envvar="CALLPLANE_DB_URL",
            help="Database URL (e.g. postgresql://user:pw@host/callplane); default SQLite in "
            "the data directory.",
        ),
    ] = None,
) -> None:
    ctx.obj = GlobalOptions(data_dir=data_dir, db_url=db_url)


# ---- tenants ----------------------------------------------------------------------------------


@tenant_app.command("add")
def tenant_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Short name, e.g. acme.")],
    domain: Annotated[str | None, typer.Option(help="SIP domain the phones use.")] = None,
    country: Annotated[str, typer.Option(help="ISO country for numbers.")] = DEFAULT_COUNTRY,
    timezone: Annotated[str, typer.Option(help="IANA time zone.")] = DEFAULT_TIMEZONE,
    default: Annotated[
        bool, typer.Option("--default", help="Route requests without a known domain here.")
    ] = False,
    extension_digits: Annotated[
        str, typer.Option(help="Length range of extension numbers, e.g. 3-6.")
    ] = "3-6",
    national: Annotated[bool, typer.Option("--national/--no-national")] = True,
    mobile: Annotated[bool, typer.Option("--mobile/--no-mobile")] = True,
    international: Annotated[bool, typer.Option("--international/--no-international")] = False,
    premium: Annotated[bool, typer.Option("--premium/--no-premium")] = False,
    emergency: Annotated[bool, typer.Option("--emergency/--no-emergency")] = True,
    external_prefix: Annotated[
        str, typer.Option(help="Digit dialed before external numbers, e.g. 0.")
    ] = "",
) -> None:
    """Add a tenant."""
    low, sep, high = extension_digits.partition("-")
    if not (sep and low.isdigit() and high.isdigit()):
        _fail(f"--extension-digits must look like 3-6, not '{extension_digits}'")
    plan = DialPlan(
        country=country.upper(),
        extension_digits=(int(low), int(high)),
        allow_national=national,
        allow_mobile=mobile,
        allow_international=international,
        allow_premium=premium,
        allow_emergency=emergency,
        external_prefix=external_prefix,
    )
    with _store(ctx) as store:
        t = store.add_tenant(
            name,
            domain=domain,
            country=country,
            timezone=timezone,
            is_default=default,
            dial_plan=plan,
        )
    typer.echo(f"tenant {t.name} added (id {t.id})")


@tenant_app.command("list")
def tenant_list(ctx: typer.Context) -> None:
    """List tenants."""
    with _store(ctx) as store:
        tenants = store.list_tenants()
    _table(
        ("ID", "NAME", "DOMAIN", "COUNTRY", "TIMEZONE", "DEFAULT", "DIAL PLAN"),
        [
            (
                t.id,
                t.name,
                t.domain or "-",
                t.country,
                t.timezone,
                "yes" if t.is_default else "",
                _dial_plan_text(t),
            )
            for t in tenants
        ],
    )


# ---- extensions -------------------------------------------------------------------------------


@extension_app.command("add")
def extension_add(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Extension number, e.g. 1001.")],
    tenant: Annotated[str | None, typer.Option(help="Tenant; default: the default one.")] = None,
    password: Annotated[
        str | None, typer.Option(help="SIP password; generated and printed if omitted.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    ring_timeout_s: Annotated[int, typer.Option(help="Seconds to ring.")] = DEFAULT_RING_TIMEOUT_S,
    caller_id: Annotated[
        str | None, typer.Option(help="Number presented outside (E.164 or national).")
    ] = None,
    enabled: Annotated[bool, typer.Option("--enabled/--disabled")] = True,
) -> None:
    """Add an extension (a SIP account)."""
    secret = password or secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
    with _store(ctx) as store:
        e = store.add_extension(
            _resolve_tenant(store, tenant),
            number,
            secret,
            display_name=name,
            ring_timeout_s=ring_timeout_s,
            caller_id_number=caller_id,
            enabled=enabled,
        )
    shown = "" if password else f"; password: {secret}"
    typer.echo(f"extension {e.number} added{shown}")


@extension_app.command("list")
def extension_list(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    show_passwords: Annotated[bool, typer.Option("--show-passwords")] = False,
) -> None:
    """List extensions."""
    with _store(ctx) as store:
        names = _tenant_names(store)
        extensions = store.list_extensions(tenant)
    headers = ["TENANT", "NUMBER", "NAME", "RING (s)", "CALLER ID", "ENABLED"]
    if show_passwords:
        headers.append("PASSWORD")
    rows = []
    for e in extensions:
        row: list[object] = [
            names[e.tenant_id],
            e.number,
            e.display_name or "-",
            e.ring_timeout_s,
            e.caller_id_number or "-",
            "yes" if e.enabled else "no",
        ]
        if show_passwords:
            row.append(e.password)
        rows.append(row)
    _table(headers, rows)


# ---- trunks -----------------------------------------------------------------------------------


@trunk_app.command("add")
def trunk_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Trunk name, e.g. provider.")],
    host: Annotated[str, typer.Option(help="Provider's SIP host.")],
    tenant: Annotated[str | None, typer.Option(help="Tenant; default: the default one.")] = None,
    port: Annotated[int, typer.Option()] = DEFAULT_SIP_PORT,
    transport: Annotated[str, typer.Option(help="udp or tcp.")] = "udp",
    auth: Annotated[str, typer.Option(help="register or ip.")] = "ip",
    username: Annotated[str | None, typer.Option()] = None,
    password: Annotated[str | None, typer.Option()] = None,
    auth_username: Annotated[
        str | None, typer.Option(help="Digest user when it differs from --username.")
    ] = None,
    register_expires_s: Annotated[int, typer.Option()] = DEFAULT_REGISTER_EXPIRES_S,
    inbound_source: Annotated[
        list[str] | None,
        typer.Option(help="host or host:port allowed to send calls in (repeatable)."),
    ] = None,
    caller_id_mode: Annotated[
        str, typer.Option(help="extension, fixed or passthrough.")
    ] = "extension",
    caller_id: Annotated[str | None, typer.Option(help="Default or fixed caller ID.")] = None,
    number_format: Annotated[str, typer.Option(help="e164 or national.")] = "e164",
    enabled: Annotated[bool, typer.Option("--enabled/--disabled")] = True,
) -> None:
    """Add a SIP trunk."""
    with _store(ctx) as store:
        t = store.add_trunk(
            _resolve_tenant(store, tenant),
            name,
            host,
            port=port,
            transport=transport,
            auth_mode=auth,
            username=username,
            password=password,
            auth_username=auth_username,
            register_expires_s=register_expires_s,
            inbound_sources=inbound_source,
            caller_id_mode=caller_id_mode,
            caller_id_number=caller_id,
            number_format=number_format,
            enabled=enabled,
        )
    typer.echo(f"trunk {t.name} added (id {t.id})")


@trunk_app.command("list")
def trunk_list(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
) -> None:
    """List trunks."""
    with _store(ctx) as store:
        names = _tenant_names(store)
        trunks = store.list_trunks(tenant)
    _table(
        ("ID", "TENANT", "NAME", "PEER", "AUTH", "INBOUND FROM", "CALLER ID", "FORMAT", "ENABLED"),
        [
            (
                t.id,
                names[t.tenant_id],
                t.name,
                f"{t.transport.lower()}:{t.host}:{t.port}",
                f"register as {t.username}" if t.auth_mode == "register" else "ip",
                ",".join(t.inbound_sources),
                t.caller_id_mode + (f" {t.caller_id_number}" if t.caller_id_number else ""),
                t.number_format,
                "yes" if t.enabled else "no",
            )
            for t in trunks
        ],
    )


# ---- DIDs -------------------------------------------------------------------------------------


@did_app.command("add")
def did_add(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Public number (E.164 or national).")],
    trunk: Annotated[str, typer.Option(help="Trunk the calls arrive on.")],
    extension: Annotated[str, typer.Option(help="Extension that rings.")],
    tenant: Annotated[str | None, typer.Option(help="Tenant; default: the default one.")] = None,
) -> None:
    """Route a public number to an extension."""
    with _store(ctx) as store:
        d = store.add_did(_resolve_tenant(store, tenant), trunk, number, destination=extension)
    typer.echo(f"DID {d.number} -> extension {d.destination}")


@did_app.command("list")
def did_list(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
) -> None:
    """List DIDs."""
    with _store(ctx) as store:
        names = _tenant_names(store)
        trunks = {t.id: t.name for t in store.list_trunks()}
        dids = store.list_dids(tenant)
    _table(
        ("NUMBER", "TENANT", "TRUNK", "DESTINATION"),
        [
            (
                d.number,
                names[d.tenant_id],
                trunks[d.trunk_id],
                f"{d.destination_type} {d.destination}",
            )
            for d in dids
        ],
    )


# ---- import, CDRs, registrations, migrate -----------------------------------------------------


@app.command("import")
def import_file(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="YAML file of tenants, extensions, trunks, DIDs.")],
) -> None:
    """Create or update everything described in a YAML file (idempotent)."""
    with _store(ctx) as store:
        counts = import_config(store, file)
    typer.echo(
        f"imported {file}: {counts['tenants']} tenants, {counts['extensions']} extensions, "
        f"{counts['trunks']} trunks, {counts['dids']} DIDs"
    )


@cdr_app.command("list")
def cdr_list(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most recent N records.")] = 100,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON array, times in epoch s.")
    ] = False,
) -> None:
    """List the most recent call detail records."""
    with _store(ctx) as store:
        names = _tenant_names(store)
        cdrs = store.list_cdrs(tenant=tenant, limit=limit)
    if as_json:
        typer.echo(
            json.dumps([{"tenant": names[c.tenant_id], **asdict(c)} for c in cdrs], indent=2)
        )
        return
    _table(
        ("STARTED", "TENANT", "DIRECTION", "FROM", "TO", "BILLABLE (s)", "CAUSE", "BY", "CALL-ID"),
        [
            (
                _when(c.started_at),
                names[c.tenant_id],
                c.direction,
                c.from_number,
                c.to_number,
                c.billable_s,
                c.hangup_cause + (f" ({c.hangup_status})" if c.hangup_status else ""),
                c.hangup_by,
                c.call_id,
            )
            for c in cdrs
        ],
    )


@registrations_app.command("list")
def registrations_list(ctx: typer.Context) -> None:
    """List the registered contacts that have not expired."""
    now = time.time()
    with _store(ctx) as store:
        directory = store.load_directory()
        regs = store.load_registrations(now)
    rows = []
    for r in regs:
        tenant = directory.tenant_by_id(r.tenant_id)
        ext = directory.extension_by_id(r.extension_id)
        rows.append(
            (
                tenant.name if tenant else r.tenant_id,
                ext.number if ext else r.extension_id,
                r.contact,
                f"{r.transport.lower()}:{r.source_host}:{r.source_port}",
                f"{max(0, round(r.expires_at - now))}",
                r.user_agent or "-",
            )
        )
    _table(("TENANT", "EXTENSION", "CONTACT", "SOURCE", "EXPIRES IN (s)", "USER AGENT"), rows)


@app.command("migrate")
def migrate(ctx: typer.Context) -> None:
    """Create or upgrade the database schema."""
    with _store(ctx) as store:
        url = make_url(store.url).render_as_string(hide_password=True)
    typer.echo(f"store {url} is up to date")


# ---- serve ------------------------------------------------------------------------------------


@app.command("serve")
def serve(
    ctx: typer.Context,
    sip_host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    sip_port: Annotated[int, typer.Option(help="UDP and TCP port.")] = DEFAULT_SIP_PORT,
    demo: Annotated[
        bool, typer.Option("--demo/--no-demo", help="Create the demo tenant if absent.")
    ] = True,
    flood_max_requests: Annotated[
        int, typer.Option(help="Requests a source may send per window before being ignored.")
    ] = 16,
    flood_window_s: Annotated[float, typer.Option(help="Flood counting window.")] = 2.0,
    flood_block_s: Annotated[float, typer.Option(help="How long a flooder is ignored.")] = 60.0,
    nonce_ttl_s: Annotated[int, typer.Option(help="Lifetime of a digest nonce.")] = 300,
    digest_algorithms: Annotated[
        str,
        typer.Option(help="Digest challenges offered, most preferred first (RFC 8760)."),
    ] = "SHA-256,MD5",
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run the PBX: SIP on UDP and TCP, registrar, B2BUA, trunks."""
    try:
        from callplane.pbx.server import ServeOptions, run_server
    except ImportError as exc:
        _fail(f"the server is not available in this build: {exc}")
    options = _options(ctx)
    try:
        run_server(
            ServeOptions(
                data_dir=options.data_dir,
                db_url=options.db_url,
                sip_host=sip_host,
                sip_port=sip_port,
                demo=demo,
                flood_max_requests=flood_max_requests,
                flood_window_s=flood_window_s,
                flood_block_s=flood_block_s,
                nonce_ttl_s=nonce_ttl_s,
                digest_algorithms=tuple(
                    a.strip() for a in digest_algorithms.split(",") if a.strip()
                ),
                log_level=log_level.upper(),
            )
        )
    except StoreError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _fail(f"database: {str(getattr(exc, 'orig', None) or exc).splitlines()[0]}")
    except OSError as exc:
        _fail(f"cannot serve on {sip_host}:{sip_port}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)


def main() -> None:
    """Entry point of the `callplane` script; honours CALLPLANE_DATA_DIR and CALLPLANE_DB_URL."""
    app(prog_name="callplane")
