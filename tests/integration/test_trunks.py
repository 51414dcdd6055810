"""SIP trunks: a provider (SIPp) sends calls to a DID, and extensions call out through it.

The provider's inbound side is trusted by its source address (`inbound_sources`); outbound, the
provider challenges the PBX's INVITE and checks the digest answer and the caller ID presented.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness.server import (
    PROVIDER_DID,
    TRUNK_PASSWORD,
    TRUNK_USERNAME,
    RunningServer,
    extension_password,
    inbound_port_of,
    trunk_of,
)
from harness.sipp import SippUas, place_call, run_sipp

PAUSE_MS = 1_000
NATIONAL_NUMBER = "0612345678"  # a French mobile, as a user dials it (tenant country FR)
CALLER_NUMBER = "+33612345678"  # who calls the DID from the public network

pytestmark = pytest.mark.timeout(90)


def _digest_fields(value: str) -> dict[str, str]:
    return {
        k.lower(): v1 or v2 for k, v1, v2 in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', value)
    }


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _expected_response(fields: dict[str, str], method: str) -> str:
    """RFC 2617 §3.2.2.1 / RFC 3261 §22.4: the digest the provider expects."""
    ha1 = _md5(f"{TRUNK_USERNAME}:{fields['realm']}:{TRUNK_PASSWORD}")
    ha2 = _md5(f"{method}:{fields['uri']}")
    if "qop" in fields:
        return _md5(
            f"{ha1}:{fields['nonce']}:{fields['nc']}:{fields['cnonce']}:{fields['qop']}:{ha2}"
        )
    return _md5(f"{ha1}:{fields['nonce']}:{ha2}")


def test_inbound_call_to_did_rings_the_extension(
    pbx: RunningServer,
    pbx_config: dict[str, Any],
    sipp_dir: Path,
    phone: Callable[..., SippUas],
) -> None:
    callee = phone("1001", "uas_answer.xml")  # the DID's destination

    provider = run_sipp(
        "uac_provider_call.xml",
        work_dir=sipp_dir,
        local_port=inbound_port_of(pbx_config),
        remote=pbx.target,
        service=PROVIDER_DID,
        pause_ms=PAUSE_MS,
        keys={"caller": CALLER_NUMBER},
    )

    assert provider.ok, provider.explain() + "\n--- server ---\n" + pbx.log_text()[-4000:]
    result = callee.wait()
    assert result.ok, result.explain()
    (cdr,) = pbx.wait_for_cdrs(1)
    assert cdr["direction"] == "inbound"
    assert cdr["trunk_id"] is not None
    assert cdr["answered_at"] is not None
    assert cdr["hangup_by"] == "caller"


@pytest.mark.parametrize("scenario", ["uas_provider_auth.xml", "uas_provider_auth_401.xml"])
def test_outbound_call_answers_provider_challenge_with_trunk_caller_id(
    pbx: RunningServer,
    pbx_config: dict[str, Any],
    sipp_dir: Path,
    uas_factory: Callable[..., SippUas],
    scenario: str,
) -> None:
    # The provider checks the dialled number and caller ID (+33123456789, the trunk's fixed
    # caller ID) and fails the call on a wrong one; the 401 variant checks the digest itself.
    provider = uas_factory(scenario, local_port=trunk_of(pbx_config)["port"], service="provider")

    caller = place_call(
        "uac_call.xml",
        pbx.target,
        work_dir=sipp_dir,
        caller="1001",
        password=extension_password("1001"),
        callee=NATIONAL_NUMBER,
        pause_ms=PAUSE_MS,
    )

    assert caller.ok, caller.explain() + "\n--- server ---\n" + pbx.log_text()[-4000:]
    result = provider.wait()
    assert result.ok, result.explain()
    authorizations = re.findall(
        r"^(?:Proxy-)?Authorization:\s*(Digest .*?)\r?$", result.messages, flags=re.M | re.I
    )
    assert authorizations, result.messages
    fields = _digest_fields(authorizations[0])
    assert fields["username"] == TRUNK_USERNAME
    assert fields["response"] == _expected_response(fields, "INVITE")
    (cdr,) = pbx.wait_for_cdrs(1)
    assert cdr["direction"] == "outbound"
    assert cdr["trunk_id"] is not None
    assert cdr["answered_at"] is not None
