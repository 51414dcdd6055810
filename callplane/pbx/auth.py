"""Digest authentication of phones for REGISTER (401) and calls (407), one realm per tenant.

Unknown users and wrong passwords take the same path and get byte-identical challenges, so a
scanner learns nothing about which extensions exist. Failures are counted per source and logged in
a fixed line fail2ban can match (`callplane.core.flood.AuthFailures.log_line`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from callplane.core.flood import AuthFailures
from callplane.core.sip.address import Address
from callplane.core.sip.dialog import new_tag
from callplane.core.sip.digest import ALGORITHMS, DigestServer, parse_credentials
from callplane.core.sip.errors import SipParseError
from callplane.core.sip.message import Request, Response, make_response
from callplane.store.records import Directory, ExtensionRec, TenantRec

log = logging.getLogger("callplane.auth")


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Either the authenticated extension, or the response (401/407/403) to send instead."""

    extension: ExtensionRec | None
    response: Response | None


class Authenticator:
    """Challenges and verifies phones; holds one `DigestServer` per tenant realm."""

    def __init__(
        self,
        directory: Directory,
        secret: bytes,
        *,
        nonce_ttl_s: float,
        algorithms: tuple[str, ...] = ALGORITHMS,
    ) -> None:
        self._secret = secret
        self._nonce_ttl_s = nonce_ttl_s
        self._algorithms = algorithms
        self._servers: dict[int, DigestServer] = {}
        self.failures = AuthFailures()
        self.directory = directory

    def realm(self, tenant: TenantRec) -> str:
        return tenant.domain or tenant.name

    def _server(self, tenant: TenantRec) -> DigestServer:
        server = self._servers.get(tenant.id)
        if server is None or server.realm != self.realm(tenant):
            server = DigestServer(
                self.realm(tenant),
                self._secret,
                nonce_ttl_s=self._nonce_ttl_s,
                algorithms=self._algorithms,
            )
            self._servers[tenant.id] = server
        return server

    def authenticate(
        self, request: Request, source: Address, tenant: TenantRec, now: float, *, proxy: bool
    ) -> AuthResult:
        """RFC 3261 §22: 401/WWW-Authenticate for REGISTER, 407/Proxy-Authenticate for the rest."""
        server = self._server(tenant)
        header = "Proxy-Authorization" if proxy else "Authorization"
        stale = False
        for value in request.headers.get_all(header):
            try:
                credentials = parse_credentials(value)
            except SipParseError as exc:
                return AuthResult(
                    None,
                    make_response(request, 400, f"Bad {header}: {exc.reason}", to_tag=new_tag()),
                )
            if credentials.realm != server.realm:
                continue
            extension = self.directory.extension(tenant.id, credentials.username)
            password = extension.password if extension and extension.enabled else None
            outcome = server.verify(request.method, credentials, password, now)
            if outcome.ok and extension is not None:
                return AuthResult(extension, None)
            stale = outcome.stale
            if not stale:
                count = self.failures.record(source.host, credentials.username, now)
                log.warning(AuthFailures.log_line(source.host, credentials.username, count))
            break
        status, name = (407, "Proxy-Authenticate") if proxy else (401, "WWW-Authenticate")
        headers = [(name, value) for value in server.challenge_headers(now, stale=stale)]
        return AuthResult(None, make_response(request, status, to_tag=new_tag(), headers=headers))
