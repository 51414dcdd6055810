"""The transaction user of the PBX: decides what each request is and who handles it.

REGISTER goes to the registrar after digest authentication; a new INVITE is either an inbound
call from a trunk (identified by its source address, routed by DID) or a call from an
authenticated extension (routed by the tenant's dial plan to an extension or out a trunk);
everything inside a call goes to the B2BUA. No socket, clock or database here: the shell passes
`now` and carries out sends, timers and store writes through the `Endpoint`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Hashable

import phonenumbers

from callplane.core.dialplan import Refused, ToExtension, route_dialled, to_e164
from callplane.core.sip.address import Address
from callplane.core.sip.dialog import new_tag
from callplane.core.sip.errors import SipParseError
from callplane.core.sip.message import Request, Response, make_response
from callplane.core.sip.transaction import TxKey
from callplane.pbx.auth import Authenticator
from callplane.pbx.b2bua import ALLOW, B2bua, Destination
from callplane.pbx.endpoint import Endpoint
from callplane.pbx.registrar import Registrar, StoreOp
from callplane.pbx.trunks import TrunkRegistrations
from callplane.store.records import CdrRec, Directory, ExtensionRec, TenantRec, TrunkRec

log = logging.getLogger("callplane.pbx")

OUTBOUND_RING_TIMEOUT_S = 120  # carriers give up on unanswered calls after about two minutes
SUPPORTED_OPTION_TAGS = frozenset({"path", "outbound"})  # RFC 3261 §8.2.2.3: what Require may ask
IN_DIALOG_ONLY = frozenset({"BYE", "UPDATE", "INFO", "PRACK"})
ALLOWED_METHODS = frozenset(ALLOW.split(", "))


class Pbx:
    """Dispatches requests and responses to the registrar, the B2BUA and the trunk registrations."""

    def __init__(
        self,
        endpoint: Endpoint,
        directory: Directory,
        registrar: Registrar,
        authenticator: Authenticator,
        persist: Callable[[StoreOp], None],
    ) -> None:
        self._ep = endpoint
        self.registrar = registrar
        self.auth = authenticator
        self.b2bua = B2bua(endpoint)
        self.trunks = TrunkRegistrations(endpoint)
        self._persist = persist
        self.directory = directory
        self._trunk_sources: dict[tuple[str, int | None], TrunkRec] = {}
        self.load(directory)

    def load(self, directory: Directory) -> None:
        """Take a new directory (at start and on reload); calls in progress keep theirs."""
        self.directory = directory
        self.auth.directory = directory
        sources: dict[tuple[str, int | None], TrunkRec] = {}
        for trunk in directory.trunks:
            if not trunk.enabled:
                continue
            for entry in trunk.inbound_sources or (f"{trunk.host}:{trunk.port}",):
                sources[_source_key(entry)] = trunk
        self._trunk_sources = sources

    def trusted_hosts(self) -> set[str]:
        """Trunk addresses, exempt from flood control."""
        return {host for host, _ in self._trunk_sources}

    def start(self, now: float) -> None:
        self.trunks.load(self.directory.trunks, now)

    # --- from the transaction layer ------------------------------------------------------------

    def on_request(self, tx: TxKey | None, request: Request, source: Address, now: float) -> None:
        method = request.method
        if tx is None:
            if method == "ACK":
                self.b2bua.on_ack(request, now)
            return
        try:
            self._dispatch(tx, request, source, now)
        except SipParseError as exc:
            self._reply(tx, request, exc.status, exc.reason)

    def _dispatch(self, tx: TxKey, request: Request, source: Address, now: float) -> None:
        method = request.method
        if method not in ALLOWED_METHODS:
            self._reply(tx, request, 501, headers=[("Allow", ALLOW)])
            return
        hops = request.headers.get("Max-Forwards")
        if hops is not None and hops.strip() == "0" and method != "OPTIONS":
            self._reply(tx, request, 483)
            return
        unsupported = [
            tag for tag in request.headers.values("Require")
            if tag.strip().lower() not in SUPPORTED_OPTION_TAGS
        ]  # fmt: skip
        if unsupported and method != "CANCEL":
            self._reply(tx, request, 420, headers=[("Unsupported", ", ".join(unsupported))])
            return
        if method == "CANCEL":
            self.b2bua.on_cancel(tx, request, dataclasses.replace(tx, method="INVITE"), now)
        elif request.to.tag is not None:
            if not self.b2bua.on_in_dialog(tx, request, source, now):
                self._reply(tx, request, 481)
        elif method == "REGISTER":
            self._register(tx, request, source, now)
        elif method == "OPTIONS":
            self._reply(
                tx, request, 200,
                headers=[("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", "path")],
            )  # fmt: skip
        elif method == "INVITE":
            self._invite(tx, request, source, now)
        else:
            self._reply(tx, request, 481 if method in IN_DIALOG_ONLY else 405,
                        headers=[("Allow", ALLOW)])  # fmt: skip

    def on_response(self, tx: TxKey, response: Response, now: float) -> None:
        if self.trunks.owns(tx):
            self.trunks.on_response(tx, response, now)
        else:
            self.b2bua.on_response(tx, response, now)

    def on_timeout(self, tx: TxKey, status: int, now: float) -> None:
        if self.trunks.owns(tx):
            self.trunks.on_timeout(tx, now)
        else:
            self.b2bua.on_timeout(tx, status, now)

    def on_stray_response(self, response: Response, now: float) -> None:
        self.b2bua.on_stray_response(response, now)

    def timer_fired(self, key: Hashable, now: float) -> None:
        if self.trunks.owns_timer(key):
            self.trunks.timer_fired(key, now)
        else:
            self.b2bua.timer_fired(key, now)

    # --- REGISTER ------------------------------------------------------------------------------

    def _authenticated(
        self, tx: TxKey, request: Request, source: Address, now: float, *, proxy: bool
    ) -> tuple[TenantRec, ExtensionRec] | None:
        """The tenant and extension a phone proved it is, or None once it has been answered."""
        tenant = self._tenant_for(request)
        if tenant is None:
            self._reply(tx, request, 403, "Unknown domain")
            return None
        result = self.auth.authenticate(request, source, tenant, now, proxy=proxy)
        if result.response is not None:
            self._ep.send_response(tx, result.response)
            return None
        assert result.extension is not None
        return tenant, result.extension

    def _register(self, tx: TxKey, request: Request, source: Address, now: float) -> None:
        who = self._authenticated(tx, request, source, now, proxy=False)
        if who is None:
            return
        tenant, extension = who
        if (request.to.uri.user or "") != extension.number:
            self._reply(tx, request, 403, "Credentials do not match the address of record")
            return
        response, ops = self.registrar.register(request, source, extension.id, tenant.id, now)
        self._ep.send_response(tx, response)
        for op in ops:
            self._persist(op)

    # --- INVITE --------------------------------------------------------------------------------

    def _invite(self, tx: TxKey, request: Request, source: Address, now: float) -> None:
        trunk = self._trunk_for_source(source)
        if trunk is not None:
            self._inbound(tx, request, source, trunk, now)
            return
        who = self._authenticated(tx, request, source, now, proxy=True)
        if who is None:
            return
        tenant, caller = who
        dialled = _user(request)
        route = route_dialled(
            dialled,
            tenant.dial_plan,
            lambda number: self.directory.extension(tenant.id, number) is not None,
        )
        if isinstance(route, Refused):
            log.info("call from %s to %r refused: %s", caller.number, dialled, route.reason)
            direction = "outbound" if route.status == 403 else "internal"
            cause = "rejected" if route.status == 403 else "not_found"
            self._refuse(tx, request, now, route.status, route.reason, cause,
                         tenant, direction, caller.number, dialled, None)  # fmt: skip
        elif isinstance(route, ToExtension):
            callee = self.directory.extension(tenant.id, route.number)
            assert callee is not None
            self._ring(tx, request, source, now, tenant, callee, caller.number,
                       _display(request) or caller.display_name, "internal", None)  # fmt: skip
        else:
            self._outbound(tx, request, source, now, tenant, caller, route.e164)

    def _inbound(
        self, tx: TxKey, request: Request, source: Address, trunk: TrunkRec, now: float
    ) -> None:
        tenant = self.directory.tenant_by_id(trunk.tenant_id)
        if tenant is None:
            self._reply(tx, request, 404)
            return
        # Providers put the DID in the Request-URI, or call the Contact we registered (user part
        # = our account name) with the DID only in To: try both, Request-URI first.
        dialled, number, did = "", None, None
        for candidate in (_user(request), request.to.uri.user_unescaped or ""):
            if not candidate:
                continue
            dialled = dialled or candidate
            number = to_e164(candidate, tenant.country)
            did = self.directory.did(number) if number else None
            if did is not None and did.tenant_id == tenant.id:
                dialled = candidate
                break
        caller_number = request.from_.uri.user or "anonymous"
        if did is None or did.tenant_id != tenant.id:
            log.info("trunk %s: no DID %r", trunk.name, dialled)
            self._refuse(tx, request, now, 404, None, "not_found",
                         tenant, "inbound", caller_number, number or dialled, trunk.id)  # fmt: skip
            return
        callee = self.directory.extension(tenant.id, did.destination)
        if callee is None or not callee.enabled:
            self._refuse(tx, request, now, 404, None, "not_found",
                         tenant, "inbound", caller_number, did.number, trunk.id)  # fmt: skip
            return
        self._ring(tx, request, source, now, tenant, callee, caller_number,
                   _display(request), "inbound", trunk.id, to_number=did.number)  # fmt: skip

    def _ring(
        self,
        tx: TxKey,
        request: Request,
        source: Address,
        now: float,
        tenant: TenantRec,
        callee: ExtensionRec,
        caller_number: str,
        caller_display: str | None,
        direction: str,
        trunk_id: int | None,
        *,
        to_number: str | None = None,
    ) -> None:
        """Ring every registered contact of `callee` (404/480 when it has none)."""
        to_number = to_number or callee.number
        if not callee.enabled:
            self._refuse(tx, request, now, 404, None, "not_found",
                         tenant, direction, caller_number, to_number, trunk_id)  # fmt: skip
            return
        bindings = self.registrar.contacts(callee.id, now)
        if not bindings:
            self._refuse(tx, request, now, 480, "Not Registered", "unavailable",
                         tenant, direction, caller_number, to_number, trunk_id)  # fmt: skip
            return
        destinations = []
        for binding in bindings:
            host = _aor_host(binding.aor)
            destinations.append(
                Destination(
                    ruri=binding.contact,
                    address=binding.source,
                    from_uri=f"sip:{caller_number}@{host}",
                    from_display=caller_display,
                    to_uri=binding.aor,
                )
            )
        self.b2bua.start_call(
            tx, request, source, now,
            tenant=tenant, direction=direction, from_number=caller_number,
            to_number=to_number, destinations=destinations,
            ring_timeout_s=callee.ring_timeout_s, trunk_id=trunk_id,
        )  # fmt: skip

    def _outbound(
        self,
        tx: TxKey,
        request: Request,
        source: Address,
        now: float,
        tenant: TenantRec,
        caller: ExtensionRec,
        number: str,
    ) -> None:
        trunk = next((t for t in self.directory.trunks_of(tenant.id) if t.enabled), None)
        if trunk is None:
            self._refuse(tx, request, now, 503, "No trunk for outside calls", "failed",
                         tenant, "outbound", caller.number, number, None)  # fmt: skip
            return
        presented = _presented_number(trunk, caller, request, tenant.country)
        dialled = _format_number(number, trunk.number_format)
        host = _host_port(trunk)
        params = ";transport=tcp" if trunk.transport.upper() == "TCP" else ""
        ruri = f"sip:{dialled}@{host}{params}"
        address = Address(trunk.transport.upper(), trunk.host, trunk.port)
        destination = Destination(
            ruri=ruri,
            address=address,
            from_uri=f"sip:{presented}@{trunk.host}",
            from_display=caller.display_name,
            to_uri=f"sip:{dialled}@{host}",
            trunk=trunk,
        )
        self.b2bua.start_call(
            tx, request, source, now,
            tenant=tenant, direction="outbound", from_number=caller.number, to_number=number,
            destinations=[destination], ring_timeout_s=OUTBOUND_RING_TIMEOUT_S,
            trunk_id=trunk.id,
        )  # fmt: skip

    # --- helpers -------------------------------------------------------------------------------

    def _tenant_for(self, request: Request) -> TenantRec | None:
        """The tenant a request addresses: by the domain of its To URI, else the default."""
        host = request.to.uri.host.strip("[]")
        return self.directory.tenant_by_domain(host) or self.directory.default_tenant()

    def _trunk_for_source(self, source: Address) -> TrunkRec | None:
        return self._trunk_sources.get((source.host, source.port)) or self._trunk_sources.get(
            (source.host, None)
        )

    def _refuse(
        self,
        tx: TxKey,
        request: Request,
        now: float,
        status: int,
        reason: str | None,
        cause: str,
        tenant: TenantRec,
        direction: str,
        from_number: str,
        to_number: str,
        trunk_id: int | None,
    ) -> None:
        """Refuse a call that got past authentication; it still leaves its CDR row."""
        self._reply(tx, request, status, reason)
        self._ep.write_cdr(
            CdrRec(
                tenant_id=tenant.id,
                call_id=request.call_id,
                from_number=from_number,
                to_number=to_number,
                direction=direction,
                trunk_id=trunk_id,
                started_at=now,
                answered_at=None,
                ended_at=now,
                billable_s=0,
                hangup_cause=cause,
                hangup_status=status,
                hangup_by="system",
            )
        )

    def _reply(
        self,
        tx: TxKey,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        response = make_response(request, status, reason, to_tag=new_tag(), headers=headers or [])
        self._ep.send_response(tx, response)


def _source_key(entry: str) -> tuple[str, int | None]:
    host, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and not host.endswith(":"):
        return host.strip("[]"), int(port)
    return entry.strip("[]"), None


def _user(request: Request) -> str:
    """The dialled string: the Request-URI's user part (RFC 3261 §19.1.1), %-decoded."""
    return request.request_uri.user_unescaped or ""


def _display(request: Request) -> str | None:
    return request.from_.display


def _aor_host(aor: str) -> str:
    host = aor.split("@", 1)[-1]
    return host.split(";", 1)[0]


def _host_port(trunk: TrunkRec) -> str:
    host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
    return f"{host}:{trunk.port}"


def _presented_number(trunk: TrunkRec, caller: ExtensionRec, request: Request, country: str) -> str:
    """The caller ID sent to the provider, by the trunk's rule (docs/operators.md)."""
    number: str | None = None
    if trunk.caller_id_mode == "fixed":
        number = trunk.caller_id_number
    elif trunk.caller_id_mode == "passthrough":
        number = to_e164(request.from_.uri.user or "", country) or trunk.caller_id_number
    else:
        number = caller.caller_id_number or trunk.caller_id_number
    if not number:
        return "anonymous"
    return _format_number(number, trunk.number_format)


def _format_number(e164: str, number_format: str) -> str:
    """An E.164 number written as the provider wants it (short numbers stay as dialled)."""
    if not e164.startswith("+") or number_format == "e164":
        return e164
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(ch for ch in national if ch.isdigit())
