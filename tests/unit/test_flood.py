"""Flood control per source, and failed-auth counting for fail2ban."""

from __future__ import annotations

import re

from callplane.core.flood import (
    DEFAULT_BLOCK_S,
    DEFAULT_RATE,
    DEFAULT_WINDOW_S,
    AuthFailures,
    FloodGuard,
    FloodVerdict,
)

ATTACKER = "203.0.113.9"
PHONE = "198.51.100.7"
TRUNK = "192.0.2.10"

# The failregex documented for fail2ban, with <HOST> expanded as fail2ban does for IPv4.
FAILREGEX = re.compile(r'auth failure from (?P<host>\d{1,3}(?:\.\d{1,3}){3}) user "')


def burst(guard: FloodGuard, host: str, count: int, now: float) -> list[bool]:
    return [guard.allow(host, now) for _ in range(count)]


def test_source_over_the_rate_is_blocked() -> None:
    guard = FloodGuard()
    assert all(burst(guard, ATTACKER, DEFAULT_RATE, 0.0))
    assert guard.check(ATTACKER, 0.1) is FloodVerdict.BLOCKED_NOW
    assert guard.check(ATTACKER, 0.2) is FloodVerdict.BLOCKED
    assert guard.blocked(0.2) == [ATTACKER]
    assert guard.block_log_line(ATTACKER) == f"flood: blocking {ATTACKER} for 60 s"


def test_steady_rate_under_the_limit_is_never_blocked() -> None:
    guard = FloodGuard()
    step = DEFAULT_WINDOW_S / DEFAULT_RATE * 1.05
    assert all(guard.allow(PHONE, i * step) for i in range(500))


def test_block_expires_after_block_time() -> None:
    guard = FloodGuard()
    burst(guard, ATTACKER, DEFAULT_RATE + 1, 0.0)
    assert not guard.allow(ATTACKER, DEFAULT_BLOCK_S - 1)
    assert guard.allow(ATTACKER, DEFAULT_BLOCK_S + 0.1)
    assert guard.blocked(DEFAULT_BLOCK_S + 0.1) == []


def test_requests_while_blocked_do_not_extend_the_block() -> None:
    guard = FloodGuard(max_requests=2, window_s=1.0, block_s=10.0)
    burst(guard, ATTACKER, 3, 0.0)
    for t in range(1, 10):
        assert not guard.allow(ATTACKER, float(t))
    assert guard.allow(ATTACKER, 10.0)


def test_other_sources_keep_calling_during_a_flood() -> None:
    guard = FloodGuard()
    for i in range(200):
        guard.allow(ATTACKER, i * 0.01)
        if i % 20 == 0:
            assert guard.allow(PHONE, i * 0.01)
    assert guard.blocked(2.0) == [ATTACKER]


def test_trusted_hosts_are_never_blocked() -> None:
    guard = FloodGuard(trusted=[TRUNK, "10.0.0.0/8"])
    assert all(burst(guard, TRUNK, 1000, 0.0))
    assert all(burst(guard, "10.1.2.3", 1000, 0.0))
    assert guard.blocked(0.0) == []


def test_trust_lifts_an_existing_block_and_normalises_ipv6() -> None:
    guard = FloodGuard(max_requests=1)
    burst(guard, "2001:db8::1", 2, 0.0)
    assert guard.blocked(0.0) == ["2001:db8::1"]
    guard.trust("2001:0db8:0000::1")
    assert guard.allow("2001:db8::1", 0.0)
    assert guard.blocked(0.0) == []


def test_memory_stays_bounded_under_spoofed_sources() -> None:
    guard = FloodGuard(max_sources=100)
    for i in range(5000):
        guard.allow(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 0.0)
    assert guard.tracked_sources() <= 200


def test_idle_sources_are_forgotten() -> None:
    guard = FloodGuard()
    for i in range(50):
        guard.allow(f"198.51.100.{i}", 0.0)
    guard.allow(PHONE, DEFAULT_WINDOW_S + 1)
    assert guard.tracked_sources() == 1


def test_auth_failures_count_within_the_window() -> None:
    failures = AuthFailures(window_s=60.0, threshold=3)
    assert failures.record(ATTACKER, "1001", 0.0) == 1
    assert failures.record(ATTACKER, "1002", 10.0) == 2
    assert not failures.over_threshold(ATTACKER, 10.0)
    assert failures.record(ATTACKER, "1003", 20.0) == 3
    assert failures.over_threshold(ATTACKER, 20.0)
    assert failures.record(PHONE, "1001", 20.0) == 1
    assert failures.record(ATTACKER, "1001", 65.0) == 3  # the failure at 0 s has left the window
    assert failures.count(ATTACKER, 200.0) == 0


def test_auth_failures_clear_on_success() -> None:
    failures = AuthFailures()
    failures.record(PHONE, "1001", 0.0)
    failures.clear(PHONE)
    assert failures.count(PHONE, 0.0) == 0


def test_log_line_matches_fail2ban_failregex() -> None:
    line = AuthFailures.log_line(ATTACKER, "1001", 3)
    assert line == 'auth failure from 203.0.113.9 user "1001" count 3'
    match = FAILREGEX.search(line)
    assert match is not None and match["host"] == ATTACKER


def test_crafted_username_cannot_make_fail2ban_ban_another_host() -> None:
    crafted = 'x" count 1\nauth failure from 192.0.2.10 user "y'
    line = AuthFailures.log_line(ATTACKER, crafted, 1)
    assert "\n" not in line
    assert [m["host"] for m in FAILREGEX.finditer(line)] == [ATTACKER]


def test_long_username_is_cut_in_the_log() -> None:
    line = AuthFailures.log_line(ATTACKER, "9" * 10_000, 1)
    assert len(line) < 200
