"""The demo tenant `callplane serve` creates on first start, so a phone can register at once."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from callplane.store import repository as repo
from callplane.store.db import Store
from callplane.store.models import Extension, Tenant

DEMO_TENANT = "demo"
DEMO_EXTENSIONS = ("1001", "1002", "1003", "1004", "1005")
DEMO_TRUNK = "demo-provider"
DEMO_TRUNK_HOST = "127.0.0.1"
DEMO_TRUNK_PORT = 5080  # beside our 5060, where a SIPp "provider" listens in the tests
DEMO_DID = "+33100000000"
DEMO_DID_TARGET = "1001"
PASSWORD_BYTES = 9  # secrets.token_urlsafe(9): 12 characters, 72 bits, beyond online guessing


def ensure_demo(store: Store) -> list[tuple[str, str]]:
    """Create whatever of the demo tenant is missing; return [(extension, password)] for all five.

    Existing rows are left as they are (an operator may have changed them), so the passwords
    returned are the ones in force.
    """
    with store.transaction() as s:
        tenant = s.scalar(select(Tenant).where(Tenant.name == DEMO_TENANT))
        if tenant is None:
            tenant = repo.put_tenant(s, DEMO_TENANT, country="FR", is_default=True)
        accounts: list[tuple[str, str]] = []
        for number in DEMO_EXTENSIONS:
            ext = s.scalar(
                select(Extension).where(
                    Extension.tenant_id == tenant.id, Extension.number == number
                )
            )
            if ext is None:
                ext = repo.put_extension(
                    s, tenant, number, secrets.token_urlsafe(PASSWORD_BYTES), display_name=number
                )
            accounts.append((ext.number, ext.password))
        trunks = {t.name for t in repo.list_trunks(s, DEMO_TENANT)}
        if DEMO_TRUNK not in trunks:
            repo.put_trunk(
                s, tenant, DEMO_TRUNK, DEMO_TRUNK_HOST, port=DEMO_TRUNK_PORT, auth_mode="ip"
            )
        if all(d.number != DEMO_DID for d in repo.list_dids(s)):
            repo.put_did(s, tenant, DEMO_TRUNK, DEMO_DID, destination=DEMO_DID_TARGET)
        return accounts
