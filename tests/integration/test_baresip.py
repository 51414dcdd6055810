"""baresip as real phones: two register, one calls the other, auto-answer, hang up, CDR."""

from __future__ import annotations

import re
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from harness.baresip import BARESIP_DIGEST_ALGORITHMS, Baresip
from harness.server import RunningServer, default_config, extension_password

TALK_S = 2.0  # the call is held this long before the caller hangs up
BILLABLE_SLACK_S = 5

pytestmark = pytest.mark.timeout(90)


def test_two_baresip_phones_call_each_other_and_cdr_has_durations(
    start_pbx: Callable[..., RunningServer], baresip_factory: Callable[..., Baresip]
) -> None:
    pbx = start_pbx(default_config(), digest_algorithms=BARESIP_DIGEST_ALGORITHMS)
    alice = baresip_factory("1001", extension_password("1001"), pbx.sip_port)
    bob = baresip_factory("1002", extension_password("1002"), pbx.sip_port)
    alice.wait_registered()
    bob.wait_registered()

    alice.dial("1002")
    bob.wait_event("CALL_ESTABLISHED")  # bob's phone rang and auto-answered
    alice.wait_event("CALL_ESTABLISHED")
    time.sleep(TALK_S)
    alice.hangup()
    bob.wait_event("CALL_CLOSED")
    alice.wait_event("CALL_CLOSED")

    (cdr,) = pbx.wait_for_cdrs(1)
    assert cdr["from_number"] == "1001"
    assert cdr["to_number"] == "1002"
    assert cdr["answered_at"] is not None
    assert cdr["started_at"] <= cdr["answered_at"] <= cdr["ended_at"]
    assert int(TALK_S) <= cdr["billable_s"] <= TALK_S + BILLABLE_SLACK_S
    assert cdr["hangup_by"] == "caller"


def dominant_hz(path: Path) -> float:
    """The strongest frequency of a WAV baresip recorded (what it heard), by FFT."""
    with wave.open(str(path), "rb") as recorded:
        rate = recorded.getframerate()
        samples = np.frombuffer(recorded.readframes(recorded.getnframes()), dtype="<i2")
    assert samples.size > rate // 2, f"{path} holds {samples.size} samples"
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


def test_audio_crosses_callplanes_relay_both_ways(
    start_pbx: Callable[..., RunningServer], baresip_factory: Callable[..., Baresip]
) -> None:
    pbx = start_pbx(default_config(), digest_algorithms=BARESIP_DIGEST_ALGORITHMS)
    alice = baresip_factory("1001", extension_password("1001"), pbx.sip_port, tone_hz=440.0)
    bob = baresip_factory("1002", extension_password("1002"), pbx.sip_port, tone_hz=1000.0)
    alice.wait_registered()
    bob.wait_registered()

    alice.dial("1002")
    bob.wait_event("CALL_ESTABLISHED")
    alice.wait_event("CALL_ESTABLISHED")
    time.sleep(TALK_S)
    alice.hangup()
    bob.wait_event("CALL_CLOSED")
    alice.wait_event("CALL_CLOSED")

    assert abs(dominant_hz(bob.heard()) - 440.0) < 10  # bob heard alice
    assert abs(dominant_hz(alice.heard()) - 1000.0) < 10  # alice heard bob
    # ...through Callplane's relay, which logs what it forwarded when the call ends.
    pbx.wait_for_cdrs(1)
    relayed = re.search(r"rtp \d+<->\d+: forwarded (\d+) and (\d+)", pbx.log_text())
    assert relayed is not None, pbx.log_text()[-2000:]
    assert int(relayed[1]) > 0 and int(relayed[2]) > 0
