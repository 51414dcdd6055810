"""UPDATE inside an answered call (RFC 3311) is relayed across the B2BUA, offer and answer alike.

The caller's UPDATE carries a new offer (sendonly); the callee's phone must receive it with that
offer and answer 200 with its own (recvonly), which must reach the caller in the 200 to its UPDATE.
Both SIPp scenarios check the SDP they receive, so each passing means its half was relayed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from harness.server import RunningServer, extension_password
from harness.sipp import SippUas, place_call

PAUSE_MS = 500  # how long the call is up before the caller sends its UPDATE

pytestmark = pytest.mark.timeout(90)


def test_update_mid_call_reaches_callee_and_its_200_reaches_caller(
    pbx: RunningServer, sipp_dir: Path, phone: Callable[..., SippUas]
) -> None:
    callee = phone("1002", "uas_answer_update.xml")

    caller = place_call(
        "uac_update.xml",
        pbx.target,
        work_dir=sipp_dir,
        caller="1001",
        password=extension_password("1001"),
        callee="1002",
        pause_ms=PAUSE_MS,
    )

    assert caller.ok, caller.explain() + "\n--- server ---\n" + pbx.log_text()[-4000:]
    answered = callee.wait()
    assert answered.ok, answered.explain()
    assert re.search(r"^UPDATE sip:", answered.messages, flags=re.M), answered.messages
    assert re.search(r"^CSeq:\s*3 UPDATE", caller.messages, flags=re.M | re.I), caller.messages
    (cdr,) = pbx.wait_for_cdrs(1)
    assert cdr["answered_at"] is not None
    assert cdr["hangup_by"] == "caller"
