"""The registrar (RFC 3261 §10.3): binds extensions to the contacts their phones register.

Bindings live in memory for routing and are written through to the store, so a restart keeps every
phone reachable. Requests to a phone go to the address its REGISTER came from (received/rport, RFC
3581), not to the host in its Contact, so phones behind NAT stay reachable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from callplane.core.sip.address import Address
from callplane.core.sip.dialog import new_tag
from callplane.core.sip.errors import SipParseError
from callplane.core.sip.headers import NameAddr, parse_contacts
from callplane.core.sip.message import Request, Response, make_response
from callplane.core.sip.uri import SipUri, parse_uri
from callplane.store.records import RegistrationRec

log = logging.getLogger("callplane.registrar")

DEFAULT_EXPIRES_S = 3600  # RFC 3261 §10.2.1.1: a UA that asks for nothing gets an hour
MIN_EXPIRES_S = 60  # RFC 3261 §10.3 step 7: shorter requests get 423 with Min-Expires
MAX_EXPIRES_S = 7200  # registrars may shorten; two hours bounds stale bindings after a crash
MAX_CONTACTS_PER_EXTENSION = 10  # desk phone, softphone, mobile... more is a misconfiguration


@dataclass(slots=True)
class Binding:
    """One registered contact of an extension."""

    extension_id: int
    tenant_id: int
    aor: str
    contact: str
    uri: SipUri
    source: Address
    expires_at: float
    call_id: str
    cseq: int
    user_agent: str | None
    registered_at: float

    def record(self) -> RegistrationRec:
        return RegistrationRec(
            extension_id=self.extension_id,
            tenant_id=self.tenant_id,
            aor=self.aor,
            contact=self.contact,
            transport=self.source.transport,
            source_host=self.source.host,
            source_port=self.source.port,
            expires_at=self.expires_at,
            call_id=self.call_id,
            cseq=self.cseq,
            user_agent=self.user_agent,
            instance_id=None,
        )


@dataclass(frozen=True, slots=True)
class SaveBinding:
    """Store action: upsert this binding."""

    record: RegistrationRec


@dataclass(frozen=True, slots=True)
class DeleteBinding:
    """Store action: remove the binding of `contact` (or all of the extension's when None)."""

    extension_id: int
    contact: str | None


StoreOp = SaveBinding | DeleteBinding


class Registrar:
    """Bindings of every extension, updated by REGISTER requests that were already authenticated."""

    def __init__(self) -> None:
        self._bindings: dict[int, dict[str, Binding]] = {}

    def restore(self, records: list[RegistrationRec], now: float) -> None:
        """Reload bindings saved in the store (at start-up)."""
        for rec in records:
            if rec.expires_at <= now:
                continue
            try:
                uri = parse_uri(rec.contact)
            except SipParseError:
                continue
            source = Address(rec.transport, rec.source_host, rec.source_port)
            self._bindings.setdefault(rec.extension_id, {})[rec.contact] = Binding(
                rec.extension_id, rec.tenant_id, rec.aor, rec.contact, uri, source,
                rec.expires_at, rec.call_id, rec.cseq, rec.user_agent, now,
            )  # fmt: skip

    def contacts(self, extension_id: int, now: float) -> list[Binding]:
        """Live bindings, most recently registered first."""
        bindings = self._bindings.get(extension_id)
        if not bindings:
            return []
        for key in [k for k, b in bindings.items() if b.expires_at <= now]:
            del bindings[key]
        return sorted(bindings.values(), key=lambda b: -b.registered_at)

    def count(self, now: float) -> int:
        return sum(len(self.contacts(ext, now)) for ext in list(self._bindings))

    def register(
        self,
        request: Request,
        source: Address,
        extension_id: int,
        tenant_id: int,
        now: float,
    ) -> tuple[Response, list[StoreOp]]:
        """RFC 3261 §10.3 steps 6–8 for an authenticated REGISTER: the answer and the store ops."""
        tag = new_tag()
        aor = str(request.to.uri.with_(params=(), headers=()))
        try:
            contacts = parse_contacts(request.headers.values("Contact"))
            header_expires = _expires(request.headers.get("Expires"))
        except (SipParseError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, SipParseError) else "bad Expires"
            return make_response(request, 400, reason, to_tag=tag), []
        ops: list[StoreOp] = []
        bindings = self._bindings.setdefault(extension_id, {})
        call_id = request.call_id
        cseq = request.cseq.seq
        if contacts == "*":
            if header_expires != 0 or len(request.headers.values("Contact")) != 1:
                reason = "wildcard Contact needs Expires: 0"
                return make_response(request, 400, reason, to_tag=tag), []
            bindings.clear()
            ops.append(DeleteBinding(extension_id, None))
            log.info("%s: all contacts removed", aor)
            return self._ok(request, extension_id, now, tag), ops
        wanted: list[tuple[NameAddr, int]] = []
        for contact in contacts:
            try:
                expires = _expires(contact.param("expires"))
            except ValueError:
                return make_response(request, 400, "bad Contact expires", to_tag=tag), []
            if expires is None:
                expires = header_expires if header_expires is not None else DEFAULT_EXPIRES_S
            if 0 < expires < MIN_EXPIRES_S:
                return make_response(
                    request, 423, to_tag=tag, headers=[("Min-Expires", str(MIN_EXPIRES_S))]
                ), []
            wanted.append((contact, min(expires, MAX_EXPIRES_S)))
        user_agent = request.headers.get("User-Agent")
        for contact, expires in wanted:
            key = str(contact.uri)
            old = bindings.get(key)
            if old is not None and old.call_id == call_id and old.cseq > cseq:
                continue  # §10.3 step 7: an older REGISTER overtaken by a newer one
            if expires == 0:
                if bindings.pop(key, None) is not None:
                    ops.append(DeleteBinding(extension_id, key))
                    log.info("%s: contact %s removed", aor, key)
                continue
            if old is None and len(bindings) >= MAX_CONTACTS_PER_EXTENSION:
                oldest = min(bindings.values(), key=lambda b: b.registered_at)
                del bindings[oldest.contact]
                ops.append(DeleteBinding(extension_id, oldest.contact))
            binding = Binding(
                extension_id, tenant_id, aor, key, contact.uri, source, now + expires,
                call_id, cseq, user_agent, now,
            )  # fmt: skip
            bindings[key] = binding
            ops.append(SaveBinding(binding.record()))
            if old is None:
                log.info("%s: registered %s from %s for %d s", aor, key, source, expires)
        return self._ok(request, extension_id, now, tag), ops

    def _ok(self, request: Request, extension_id: int, now: float, tag: str) -> Response:
        headers = [
            ("Contact", f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}")
            for b in self.contacts(extension_id, now)
        ]
        return make_response(request, 200, to_tag=tag, headers=headers)


def _expires(value: str | None) -> int | None:
    """An Expires value (RFC 3261 §20.19: delta-seconds); ValueError when not a number."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit():
        raise ValueError(text)
    return min(int(text), 2**32 - 1)
