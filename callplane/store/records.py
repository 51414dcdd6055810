"""Plain records the PBX keeps in memory: frozen copies of store rows, no ORM object leaks out.

Times are epoch seconds (float) in and out; the store keeps them as UTC timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callplane.core.dialplan import DialPlan

DEFAULT_RING_TIMEOUT_S = 30  # a phone rings ~6 times before voicemail/no-answer handling takes over
DEFAULT_SIP_PORT = 5060  # RFC 3261 §19.1.2: default port for sip: URIs over UDP and TCP
DEFAULT_REGISTER_EXPIRES_S = 600  # re-register every 10 min: short enough to survive NAT rebinding

TRANSPORTS = ("UDP", "TCP")
AUTH_MODES = ("register", "ip")
CALLER_ID_MODES = ("extension", "fixed", "passthrough")
NUMBER_FORMATS = ("e164", "national")
DESTINATION_TYPES = ("extension",)
DIRECTIONS = ("internal", "inbound", "outbound")
HANGUP_SIDES = ("caller", "callee", "system")


@dataclass(frozen=True, slots=True)
class TenantRec:
    """A client company: its SIP domain, country (for number parsing) and dial plan."""

    id: int
    name: str
    domain: str | None
    country: str
    timezone: str
    dial_plan: DialPlan
    is_default: bool = False


@dataclass(frozen=True, slots=True)
class ExtensionRec:
    """A SIP account of a tenant; `caller_id_number` is the E.164 number shown outside."""

    id: int
    tenant_id: int
    number: str
    password: str
    display_name: str | None
    ring_timeout_s: int = DEFAULT_RING_TIMEOUT_S
    caller_id_number: str | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class TrunkRec:
    """A provider account, registering to the provider or authenticated by source address.

    `inbound_sources` holds the "host" or "host:port" entries allowed to send calls in; when the
    operator gave none it is `(host:port,)`, plus the bare host for register mode (providers
    often send INVITEs from another port than the registrar's).
    """

    id: int
    tenant_id: int
    name: str
    host: str
    port: int = DEFAULT_SIP_PORT
    transport: str = "UDP"
    auth_mode: str = "ip"
    username: str | None = None
    password: str | None = None
    auth_username: str | None = None
    register_expires_s: int = DEFAULT_REGISTER_EXPIRES_S
    inbound_sources: tuple[str, ...] = ()
    caller_id_mode: str = "extension"
    caller_id_number: str | None = None
    number_format: str = "e164"
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class DidRec:
    """A public number (E.164) reached through a trunk and routed to a destination."""

    id: int
    tenant_id: int
    trunk_id: int
    number: str
    destination_type: str
    destination: str


@dataclass(frozen=True, slots=True)
class RegistrationRec:
    """One contact bound to an extension by REGISTER (RFC 3261 §10.3), kept across restarts."""

    extension_id: int
    tenant_id: int
    aor: str
    contact: str
    transport: str
    source_host: str
    source_port: int
    expires_at: float
    call_id: str
    cseq: int
    user_agent: str | None = None
    instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class CdrRec:
    """One call detail record, written when the call ends."""

    tenant_id: int
    call_id: str
    from_number: str
    to_number: str
    direction: str
    trunk_id: int | None
    started_at: float
    answered_at: float | None
    ended_at: float
    billable_s: int
    hangup_cause: str
    hangup_status: int | None
    hangup_by: str


@dataclass(frozen=True, slots=True)
class Directory:
    """Everything the PBX routes by, loaded at once, with lookups by the keys SIP gives us."""

    tenants: tuple[TenantRec, ...]
    extensions: tuple[ExtensionRec, ...]
    trunks: tuple[TrunkRec, ...]
    dids: tuple[DidRec, ...]
    _tenant_by_id: dict[int, TenantRec] = field(init=False, repr=False, compare=False)
    _tenant_by_domain: dict[str, TenantRec] = field(init=False, repr=False, compare=False)
    _extension: dict[tuple[int, str], ExtensionRec] = field(init=False, repr=False, compare=False)
    _extension_by_id: dict[int, ExtensionRec] = field(init=False, repr=False, compare=False)
    _trunk_by_id: dict[int, TrunkRec] = field(init=False, repr=False, compare=False)
    _did: dict[str, DidRec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tenant_by_id", {t.id: t for t in self.tenants})
        object.__setattr__(
            self,
            "_tenant_by_domain",
            {t.domain.lower(): t for t in self.tenants if t.domain is not None},
        )
        object.__setattr__(
            self, "_extension", {(e.tenant_id, e.number): e for e in self.extensions}
        )
        object.__setattr__(self, "_extension_by_id", {e.id: e for e in self.extensions})
        object.__setattr__(self, "_trunk_by_id", {t.id: t for t in self.trunks})
        object.__setattr__(self, "_did", {d.number: d for d in self.dids})

    def tenant_by_id(self, tenant_id: int) -> TenantRec | None:
        return self._tenant_by_id.get(tenant_id)

    def tenant_by_domain(self, domain: str) -> TenantRec | None:
        """The tenant whose SIP domain is `domain` (case-insensitive, RFC 3261 §19.1.4)."""
        return self._tenant_by_domain.get(domain.lower())

    def default_tenant(self) -> TenantRec | None:
        """The only tenant when there is exactly one, else the one flagged default, else None."""
        if len(self.tenants) == 1:
            return self.tenants[0]
        return next((t for t in self.tenants if t.is_default), None)

    def extension(self, tenant_id: int, number: str) -> ExtensionRec | None:
        return self._extension.get((tenant_id, number))

    def extension_by_id(self, extension_id: int) -> ExtensionRec | None:
        return self._extension_by_id.get(extension_id)

    def extensions_of(self, tenant_id: int) -> tuple[ExtensionRec, ...]:
        return tuple(e for e in self.extensions if e.tenant_id == tenant_id)

    def did(self, number: str) -> DidRec | None:
        """The DID for an E.164 number (with its leading '+')."""
        return self._did.get(number)

    def trunk_by_id(self, trunk_id: int) -> TrunkRec | None:
        return self._trunk_by_id.get(trunk_id)

    def trunks_of(self, tenant_id: int) -> tuple[TrunkRec, ...]:
        """The tenant's trunks in creation order (the first enabled one carries outbound calls)."""
        return tuple(t for t in self.trunks if t.tenant_id == tenant_id)
