"""The dial plan: what a dialled string is, and whether the tenant may dial it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callplane.core.dialplan import (
    DialPlan,
    Refused,
    ToExtension,
    ToExternal,
    route_dialled,
    to_e164,
)

EXTENSIONS = {"1001", "1002", "2000", "*97", "112"}
FR = DialPlan()
US = DialPlan(country="US")


def route(dialled: str, plan: DialPlan = FR) -> ToExtension | ToExternal | Refused:
    return route_dialled(dialled, plan, EXTENSIONS.__contains__)


@pytest.mark.parametrize(
    ("dialled", "plan", "expected"),
    [
        ("1001", FR, ToExtension("1001")),
        ("*97", FR, ToExtension("*97")),
        ("01 42 68 53 00", FR, ToExternal("+33142685300", "national")),
        ("06.12.34.56.78", FR, ToExternal("+33612345678", "mobile")),
        ("0800123456", FR, ToExternal("+33800123456", "toll_free")),
        ("+33 1 42 68 53 00", FR, ToExternal("+33142685300", "national")),
        ("(212) 555-1234", US, ToExternal("+12125551234", "national")),
        ("1-212-555-1234", US, ToExternal("+12125551234", "national")),
        ("1-800-275-2273", US, ToExternal("+18002752273", "toll_free")),
        ("112", FR, ToExternal("112", "emergency")),
        ("15", FR, ToExternal("15", "emergency")),
        ("17", FR, ToExternal("17", "emergency")),
        ("18", FR, ToExternal("18", "emergency")),
        ("911", US, ToExternal("911", "emergency")),
        ("0044 20 7946 0000", FR, Refused("international numbers are not allowed", 403)),
        ("+44 20 7946 0000", FR, Refused("international numbers are not allowed", 403)),
        ("011 44 20 7946 0000", US, Refused("international numbers are not allowed", 403)),
        ("+1 876 555 1234", US, Refused("international numbers are not allowed", 403)),
        ("0899123456", FR, Refused("premium-rate numbers are not allowed", 403)),
        ("1-900-555-1234", US, Refused("premium-rate numbers are not allowed", 403)),
        ("3949", FR, Refused("no such extension", 404)),
        ("1001;x", FR, Refused("not a diallable number", 404)),
        ("../etc/passwd", FR, Refused("not a diallable number", 404)),
        ("1001@evil", FR, Refused("not a diallable number", 404)),
        ("%31001", FR, Refused("not a diallable number", 404)),
        ("1-800-FLOWERS", US, Refused("not a diallable number", 404)),
        ("", FR, Refused("not a diallable number", 404)),
        ("0612", FR, Refused("number is incomplete", 484)),
        ("10", FR, Refused("number is incomplete", 484)),
        ("0612345678999999", FR, Refused("not a valid number", 404)),
        ("9" * 40, FR, Refused("not a diallable number", 404)),
        ("06*1234", FR, Refused("feature codes are not outside numbers", 404)),
        ("4321", FR, Refused("no such extension", 404)),
        ("2345", US, Refused("no such extension", 404)),
    ],
)
def test_route_dialled_table(
    dialled: str, plan: DialPlan, expected: ToExtension | ToExternal | Refused
) -> None:
    assert route(dialled, plan) == expected


def test_international_allowed_when_the_plan_says_so() -> None:
    plan = DialPlan(allow_international=True)
    assert route("0044 20 7946 0000", plan) == ToExternal("+442079460000", "international")


def test_premium_allowed_only_with_allow_premium() -> None:
    plan = DialPlan(allow_premium=True)
    assert route("0899123456", plan) == ToExternal("+33899123456", "premium")
    assert route("3949", plan) == ToExternal("3949", "premium")  # a premium short number


def test_international_premium_needs_both_permissions() -> None:
    foreign_premium = "+1 900 555 1234"
    assert route(foreign_premium, DialPlan(allow_international=True)) == Refused(
        "premium-rate numbers are not allowed", 403
    )
    assert route(foreign_premium, DialPlan(allow_premium=True)) == Refused(
        "international numbers are not allowed", 403
    )
    both = DialPlan(allow_international=True, allow_premium=True)
    assert route(foreign_premium, both) == ToExternal("+19005551234", "premium")


def test_mobile_and_national_can_be_forbidden() -> None:
    plan = DialPlan(allow_mobile=False, allow_national=False)
    assert route("0612345678", plan) == Refused("mobile numbers are not allowed", 403)
    assert route("0142685300", plan) == Refused("national numbers are not allowed", 403)
    assert route("1001", plan) == ToExtension("1001")


def test_emergency_cannot_be_shadowed_by_an_extension_and_can_be_refused() -> None:
    assert route("112") == ToExternal("112", "emergency")  # "112" is also in EXTENSIONS
    assert route("112", DialPlan(allow_emergency=False)) == Refused(
        "emergency numbers are not allowed", 403
    )


def test_external_prefix_is_required_and_stripped() -> None:
    plan = DialPlan(external_prefix="0")
    assert route("00142685300", plan) == ToExternal("+33142685300", "national")
    assert route("0112", plan) == ToExternal("112", "emergency")
    assert route("112", plan) == ToExternal("112", "emergency")
    assert route("1001", plan) == ToExtension("1001")
    assert route("4321", plan) == Refused("no such extension", 404)
    assert route("0", plan) == Refused("number is incomplete", 484)
    assert route("+33142685300", plan) == ToExternal("+33142685300", "national")


def test_us_plan_with_outside_line_prefix_9() -> None:
    plan = DialPlan(country="US", external_prefix="9")
    assert route("9 212 555 1234", plan) == ToExternal("+12125551234", "national")
    assert route("911", plan) == ToExternal("911", "emergency")


@given(st.text(max_size=40))
def test_any_string_gets_a_decision(dialled: str) -> None:
    result = route(dialled)
    assert isinstance(result, ToExtension | ToExternal | Refused)
    if isinstance(result, ToExternal):
        assert result.e164.lstrip("+").isdigit()


@pytest.mark.parametrize(
    ("number", "country", "expected"),
    [
        ("01 42 68 53 00", "FR", "+33142685300"),
        ("+33142685300", "US", "+33142685300"),
        ("(212) 555-1234", "US", "+12125551234"),
        ("0033 6 12 34 56 78", "FR", "+33612345678"),
        ("12345", "FR", None),
        ("1001;tag", "FR", None),
        ("", "FR", None),
        ("anonymous", "FR", None),
    ],
)
def test_to_e164(number: str, country: str, expected: str | None) -> None:
    assert to_e164(number, country) == expected
