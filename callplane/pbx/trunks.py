"""Registrations of Callplane to its providers, for trunks in `register` mode (RFC 3261 §10.2).

Each such trunk REGISTERs its account to the provider, answers the provider's digest challenge,
and refreshes before expiry; a failure is retried after a pause. The state of each trunk is logged
as `old -> event -> new` so an operator sees why calls do not come in.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Hashable
from dataclasses import dataclass

from callplane.core.sip.address import Address
from callplane.core.sip.digest import answer_challenge, pick_challenge
from callplane.core.sip.errors import SipParseError
from callplane.core.sip.message import Headers, Request, Response
from callplane.core.sip.transaction import TxKey
from callplane.pbx.endpoint import Endpoint
from callplane.store.records import TrunkRec

log = logging.getLogger("callplane.trunks")

REFRESH_FRACTION = 0.8  # re-register at 80% of the granted time, before the binding lapses
RETRY_AFTER_FAILURE_S = 60.0  # a refused or unreachable provider is asked again each minute
MAX_AUTH_ROUNDS = 2  # one challenge, plus one stale=true nonce refresh


@dataclass(frozen=True, slots=True)
class TrunkTimer:
    """When to (re-)register trunk `trunk_id`."""

    trunk_id: int


@dataclass(eq=False, slots=True)
class _State:
    trunk: TrunkRec
    call_id: str
    tag: str
    cseq: int = 0
    status: str = "unregistered"
    tx: TxKey | None = None
    auth_rounds: int = 0


class TrunkRegistrations:
    """Keeps every `register`-mode trunk registered with its provider."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._ep = endpoint
        self._states: dict[int, _State] = {}
        self._by_tx: dict[TxKey, _State] = {}

    def load(self, trunks: tuple[TrunkRec, ...], now: float) -> None:
        wanted = {t.id: t for t in trunks if t.enabled and t.auth_mode == "register"}
        for trunk_id in list(self._states):
            if trunk_id not in wanted:
                self._ep.cancel_timer(TrunkTimer(trunk_id))
                del self._states[trunk_id]
        for trunk_id, trunk in wanted.items():
            state = self._states.get(trunk_id)
            if state is None:
                state = _State(trunk, f"{secrets.token_hex(12)}@callplane", secrets.token_hex(6))
                self._states[trunk_id] = state
                self._register(state, now, None)
            else:
                state.trunk = trunk

    def status(self, trunk_id: int) -> str:
        state = self._states.get(trunk_id)
        return state.status if state else "not registering"

    def owns(self, tx: TxKey) -> bool:
        return tx in self._by_tx

    def owns_timer(self, key: Hashable) -> bool:
        return isinstance(key, TrunkTimer)

    def timer_fired(self, key: Hashable, now: float) -> None:
        if isinstance(key, TrunkTimer) and (state := self._states.get(key.trunk_id)):
            state.auth_rounds = 0
            self._register(state, now, None)

    def _register(self, state: _State, now: float, authorization: tuple[str, str] | None) -> None:
        trunk = state.trunk
        address = Address(trunk.transport.upper(), trunk.host, trunk.port)
        host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
        aor = f"sip:{trunk.username}@{host}"
        state.cseq += 1
        headers = Headers()
        headers.add("Via", self._ep.via(address.transport, address))
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{aor}>;tag={state.tag}")
        headers.add("To", f"<{aor}>")
        headers.add("Call-ID", state.call_id)
        headers.add("CSeq", f"{state.cseq} REGISTER")
        headers.add("Contact", self._ep.contact(address.transport, address, trunk.username or ""))
        headers.add("Expires", str(trunk.register_expires_s))
        if authorization is not None:
            headers.add(*authorization)
        request = Request("REGISTER", f"sip:{host}:{trunk.port}", headers)
        tx = self._ep.send_request(request, address)
        state.tx = tx
        self._by_tx[tx] = state

    def on_response(self, tx: TxKey, response: Response, now: float) -> None:
        state = self._by_tx.get(tx)
        if state is None or response.status < 200:
            return
        del self._by_tx[tx]
        trunk = state.trunk
        if response.status in (401, 407) and state.auth_rounds < MAX_AUTH_ROUNDS:
            header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
            challenges = response.headers.get_all(header)
            if challenges and trunk.password:
                try:
                    value = answer_challenge(
                        pick_challenge(challenges),
                        method="REGISTER",
                        uri=f"sip:{trunk.host}:{trunk.port}",
                        username=trunk.auth_username or trunk.username or "",
                        password=trunk.password,
                        cnonce=secrets.token_hex(8),
                    )
                except SipParseError as exc:
                    log.warning("trunk %s: cannot answer challenge: %s", trunk.name, exc.reason)
                else:
                    state.auth_rounds += 1
                    name = "Authorization" if response.status == 401 else "Proxy-Authorization"
                    self._register(state, now, (name, value))
                    return
        if 200 <= response.status < 300:
            granted = _granted_expires(response, trunk.register_expires_s)
            self._move(state, f"{response.status}", "registered")
            self._ep.start_timer(TrunkTimer(trunk.id), now + granted * REFRESH_FRACTION)
        else:
            self._move(state, f"{response.status} {response.reason}", "failed")
            self._ep.start_timer(TrunkTimer(trunk.id), now + RETRY_AFTER_FAILURE_S)

    def on_timeout(self, tx: TxKey, now: float) -> None:
        state = self._by_tx.pop(tx, None)
        if state is not None:
            self._move(state, "timeout", "failed")
            self._ep.start_timer(TrunkTimer(state.trunk.id), now + RETRY_AFTER_FAILURE_S)

    def _move(self, state: _State, event: str, new: str) -> None:
        log.info("trunk %s: %s -> %s -> %s", state.trunk.name, state.status, event, new)
        state.status = new


def _granted_expires(response: Response, asked: int) -> int:
    """The registration time the provider granted: Contact expires, else Expires, else asked."""
    for value in response.headers.values("Contact"):
        for param in value.split(";")[1:]:
            name, _, number = param.partition("=")
            if name.strip().lower() == "expires" and number.strip().isdigit():
                return max(int(number), 1)
    expires = response.headers.get("Expires")
    if expires is not None and expires.strip().isdigit():
        return max(int(expires), 1)
    return asked
