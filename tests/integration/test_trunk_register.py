"""A trunk in `register` mode: the PBX registers its account to the provider, then takes its calls.

The provider's registrar (a SIPp uas) challenges the REGISTER with an MD5 digest and verifies the
answer against the trunk's password before granting the binding; the provider's inbound side then
sends a call to the DID from the trunk's host, which a registering trunk trusts on any port.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness.ports import free_udp_tcp_port
from harness.server import PROVIDER_DID, RunningServer, default_config, trunk_of
from harness.sipp import SippUas, run_sipp

PAUSE_MS = 1_000
CALLER_NUMBER = "+33612345678"  # who calls the DID from the public network
REGISTERED_WAIT_S = 10.0  # the server logs the trunk's new state once it has the provider's 200
LOG_POLL_S = 0.1

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def pbx_config() -> dict[str, Any]:
    """The default tenant with its trunk registering to the provider, no inbound sources given."""
    config = default_config(trunk_auth="register")
    del trunk_of(config)["inbound_sources"]  # register mode then trusts the trunk's host
    return config


@pytest.fixture
def registrar(pbx_config: dict[str, Any], uas_factory: Callable[..., SippUas]) -> SippUas:
    """The provider's registrar, listening on the trunk's port."""
    return uas_factory("provider_registrar.xml", local_port=trunk_of(pbx_config)["port"])


@pytest.fixture
def pbx(
    start_pbx: Callable[..., RunningServer], pbx_config: dict[str, Any], registrar: SippUas
) -> RunningServer:
    """The server, started once the registrar listens: trunks register when the server starts."""
    return start_pbx(pbx_config)


def _wait_for_log(pbx: RunningServer, pattern: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if re.search(pattern, pbx.log_text()):
            return True
        time.sleep(LOG_POLL_S)
    return bool(re.search(pattern, pbx.log_text()))


def test_register_trunk_answers_provider_challenge_and_takes_calls_to_did(
    pbx: RunningServer,
    registrar: SippUas,
    sipp_dir: Path,
    phone: Callable[..., SippUas],
) -> None:
    registered = registrar.wait()
    assert registered.ok, registered.explain() + "\n--- server ---\n" + pbx.log_text()[-4000:]
    assert _wait_for_log(pbx, r"trunk provider: \S+ -> 200 -> registered", REGISTERED_WAIT_S), (
        pbx.log_text()[-4000:]
    )
    callee = phone("1001", "uas_answer.xml")  # the DID's destination

    provider = run_sipp(
        "uac_provider_call.xml",
        work_dir=sipp_dir,
        local_port=free_udp_tcp_port(),  # not the registrar's port: the host alone is trusted
        remote=pbx.target,
        service=PROVIDER_DID,
        pause_ms=PAUSE_MS,
        keys={"caller": CALLER_NUMBER},
    )

    assert provider.ok, provider.explain() + "\n--- server ---\n" + pbx.log_text()[-4000:]
    answered = callee.wait()
    assert answered.ok, answered.explain()
    (cdr,) = pbx.wait_for_cdrs(1)
    assert cdr["direction"] == "inbound"
    assert cdr["trunk_id"] is not None
    assert cdr["from_number"] == CALLER_NUMBER
    assert cdr["answered_at"] is not None
