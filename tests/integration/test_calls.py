"""Extension-to-extension calls through the B2BUA, with SIPp phones on both sides.

Each callee is a SIPp UAS that first REGISTERs from the port it then listens on; the caller is a
SIPp uac that answers the PBX's digest challenge. Outcomes are what the two phones saw (their
scenarios passed) and the CDR the call left.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from harness.server import RunningServer, extension_password, sip_options
from harness.sipp import SippResult, SippUas, place_call

PAUSE_MS = 2_000  # how long the caller talks before hanging up
PAUSE_S = PAUSE_MS // 1_000
BILLABLE_SLACK_S = 5  # signalling on 127.0.0.1 adds well under this to a call

pytestmark = pytest.mark.timeout(90)


def _call(
    pbx: RunningServer,
    sipp_dir: Path,
    scenario: str,
    callee: str,
    *,
    caller: str = "1001",
    transport: str = "udp",
    pause_ms: int = PAUSE_MS,
) -> SippResult:
    return place_call(
        scenario,
        pbx.target,
        work_dir=sipp_dir,
        caller=caller,
        password=extension_password(caller),
        callee=callee,
        transport=transport,
        pause_ms=pause_ms,
    )


def _assert_completed(uas: SippUas) -> None:
    result = uas.wait()
    assert result.ok, result.explain()


def test_options_is_answered_200_for_keepalive(pbx: RunningServer) -> None:
    assert sip_options(pbx.sip_port) == 200


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_basic_call_rings_callee_and_leaves_answered_cdr(
    pbx: RunningServer,
    sipp_dir: Path,
    phone: Callable[..., SippUas],
    transport: str,
) -> None:
    callee = phone("1002", "uas_answer.xml", transport=transport)

    caller = _call(pbx, sipp_dir, "uac_call.xml", "1002", transport=transport)

    assert caller.ok, caller.explain() + "\n--- server ---\n" + pbx.log_text()[-4000:]
    _assert_completed(callee)
    (cdr,) = pbx.wait_for_cdrs(1)
    assert cdr["from_number"] == "1001"
    assert cdr["to_number"] == "1002"
    assert cdr["answered_at"] is not None
    assert cdr["started_at"] <= cdr["answered_at"] <= cdr["ended_at"]
    assert PAUSE_S <= cdr["billable_s"] <= PAUSE_S + BILLABLE_SLACK_S
    assert cdr["hangup_by"] == "caller"


def test_callee_hanging_up_ends_call_for_caller(
    pbx: RunningServer, sipp_dir: Path, phone: Callable[..., SippUas]
) -> None:
    callee = phone("1002", "uas_answer_hangup.xml", pause_ms=PAUSE_MS)

    caller = _call(pbx, sipp_dir, "uac_call_callee_hangup.xml", "1002")

    assert caller.ok, caller.explain()
    _assert_completed(callee)
    (cdr,) = pbx.wait_for_cdrs(1)
    assert cdr["hangup_by"] == "callee"
    assert cdr["billable_s"] >= PAUSE_S


def test_cancel_while_ringing_stops_callee_ringing(
    pbx: RunningServer, sipp_dir: Path, phone: Callable[..., SippUas]
) -> None:
    callee = phone("1002", "uas_ring_forever.xml")

    caller = _call(pbx, sipp_dir, "uac_cancel.xml", "1002", pause_ms=500)

    assert caller.ok, caller.explain()
    _assert_completed(callee)  # the callee got CANCEL and answered 487
    (cdr,) = pbx.wait_for_cdrs(1)
    assert cdr["answered_at"] is None
    assert cdr["billable_s"] == 0
    assert cdr["hangup_by"] == "caller"


def test_busy_callee_486_is_passed_back_to_caller(
    pbx: RunningServer, sipp_dir: Path, phone: Callable[..., SippUas]
) -> None:
    callee = phone("1002", "uas_busy.xml")

    caller = _call(pbx, sipp_dir, "uac_expect_486.xml", "1002")

    assert caller.ok, caller.explain()
    _assert_completed(callee)
    (cdr,) = pbx.wait_for_cdrs(1)
    assert cdr["answered_at"] is None
    assert cdr["hangup_status"] == 486


def test_no_answer_after_ring_timeout_gives_480_or_408(
    pbx: RunningServer, sipp_dir: Path, phone: Callable[..., SippUas]
) -> None:
    callee = phone("1003", "uas_ring_forever.xml")  # 1003 rings for 2 s in the default config

    caller = _call(pbx, sipp_dir, "uac_expect_480_or_408.xml", "1003")

    assert caller.ok, caller.explain()
    _assert_completed(callee)  # the PBX cancelled the ringing phone
    (cdr,) = pbx.wait_for_cdrs(1)
    assert cdr["answered_at"] is None
    assert cdr["hangup_status"] in (480, 408)


def test_unregistered_extension_gives_480(pbx: RunningServer, sipp_dir: Path) -> None:
    caller = _call(pbx, sipp_dir, "uac_expect_480_or_408.xml", "1004")

    assert caller.ok, caller.explain()
    assert "SIP/2.0 480" in caller.messages


def test_unknown_number_gives_404(pbx: RunningServer, sipp_dir: Path) -> None:
    caller = _call(pbx, sipp_dir, "uac_expect_404.xml", "1999")

    assert caller.ok, caller.explain()


def test_reinvite_mid_call_reaches_callee_and_is_accepted(
    pbx: RunningServer, sipp_dir: Path, phone: Callable[..., SippUas]
) -> None:
    callee = phone("1002", "uas_answer_reinvite.xml")

    caller = _call(pbx, sipp_dir, "uac_reinvite.xml", "1002", pause_ms=500)

    assert caller.ok, caller.explain()
    _assert_completed(callee)  # the callee's phone received the re-INVITE and accepted it
