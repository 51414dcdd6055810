"""Decides what a dialled string is and whether a tenant may dial it.

Number classification comes from the `phonenumbers` package (Google's libphonenumber metadata),
not hand-written tables, so national plans, mobile ranges, premium ranges and emergency short
codes stay current with a package upgrade.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType, ShortNumberCost, ValidationResult, shortnumberinfo

MAX_DIALLED_CHARS = 32  # E.164 allows 15 digits; with an international prefix (up to 4 digits), an
# outside-line prefix and a feature code, anything longer is not a number a person dialled
_SEPARATORS = str.maketrans("", "", "-.() ")  # visual separators phones and CRMs insert
_DIALLABLE_RE = re.compile(r"\+?[0-9*#]+")  # RFC 3966 §3 global/local number digits, no letters

STATUS_FORBIDDEN = 403  # RFC 3261 §21.4.4: understood, but the dial plan does not allow it
STATUS_NOT_FOUND = 404  # RFC 3261 §21.4.5: not an extension nor a number
STATUS_ADDRESS_INCOMPLETE = 484  # RFC 3261 §21.4.22: too short, the caller should dial more


E164_CACHE_SIZE = 4096  # DIDs and caller IDs repeat call after call; parsing one costs ~50 µs


@dataclass(frozen=True, slots=True)
class DialPlan:
    """What the extensions of one tenant may dial."""

    country: str = "FR"  # ISO region of the tenant, for national numbers
    extension_digits: tuple[int, int] = (3, 6)  # min/max length of an extension number
    allow_national: bool = True
    allow_mobile: bool = True
    allow_international: bool = False
    allow_premium: bool = False
    allow_emergency: bool = True
    external_prefix: str = ""  # e.g. "0" to get an outside line; "" = none


@dataclass(frozen=True, slots=True)
class ToExtension:
    """The dialled string is an extension of the tenant."""

    number: str


@dataclass(frozen=True, slots=True)
class ToExternal:
    """An outside number allowed by the plan, to send out a trunk.

    `e164` is the E.164 form (`+33142685300`), except for emergency and other short numbers,
    which have no E.164 form and carry the short digits (`112`) to send to the trunk as dialled.
    `kind` is one of "national", "mobile", "international", "toll_free", "shared_cost",
    "premium", "short" and "emergency".
    """

    e164: str
    kind: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The dialled string cannot be routed; `status` is the SIP response to send."""

    reason: str
    status: int


Route = ToExtension | ToExternal | Refused

_FORBIDDEN_KIND = {
    "national": "national numbers are not allowed",
    "toll_free": "national numbers are not allowed",
    "shared_cost": "national numbers are not allowed",
    "short": "national numbers are not allowed",
    "mobile": "mobile numbers are not allowed",
    "international": "international numbers are not allowed",
    "premium": "premium-rate numbers are not allowed",
    "emergency": "emergency numbers are not allowed",
}


def _clean(dialled: str) -> str | None:
    """The dialled string without visual separators, or None when it is not diallable."""
    if len(dialled) > MAX_DIALLED_CHARS:
        return None
    cleaned = dialled.translate(_SEPARATORS)
    return cleaned if _DIALLABLE_RE.fullmatch(cleaned) else None


def _allowed(kind: str, plan: DialPlan) -> bool:
    match kind:
        case "national" | "toll_free" | "shared_cost" | "short":
            return plan.allow_national
        case "mobile":
            return plan.allow_mobile
        case "international":
            return plan.allow_international
        case "premium":
            return plan.allow_premium
        case "emergency":
            return plan.allow_emergency
    return False


def _decide(e164: str, kind: str, plan: DialPlan) -> Route:
    if _allowed(kind, plan):
        return ToExternal(e164=e164, kind=kind)
    return Refused(reason=_FORBIDDEN_KIND[kind], status=STATUS_FORBIDDEN)


def _classify(number: str, plan: DialPlan) -> Route:
    """Route an outside number (external prefix already removed) by libphonenumber's metadata."""
    if "*" in number or "#" in number:
        return Refused(reason="feature codes are not outside numbers", status=STATUS_NOT_FOUND)
    region = plan.country.upper()
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type in (
            phonenumbers.NumberParseException.TOO_SHORT_NSN,
            phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD,
        ):
            return Refused(reason="number is incomplete", status=STATUS_ADDRESS_INCOMPLETE)
        return Refused(reason="not a valid number", status=STATUS_NOT_FOUND)
    if not number.startswith("+") and shortnumberinfo.is_valid_short_number_for_region(
        parsed, region
    ):
        cost = shortnumberinfo.expected_cost_for_region(parsed, region)
        if cost in (ShortNumberCost.PREMIUM_RATE, ShortNumberCost.UNKNOWN_COST):
            return _decide(number, "premium", plan)
        return _decide(number, "toll_free" if cost == ShortNumberCost.TOLL_FREE else "short", plan)
    if not phonenumbers.is_valid_number(parsed):
        reason = phonenumbers.is_possible_number_with_reason(parsed)
        if reason == ValidationResult.TOO_SHORT:
            return Refused(reason="number is incomplete", status=STATUS_ADDRESS_INCOMPLETE)
        return Refused(reason="not a valid number", status=STATUS_NOT_FOUND)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    number_type = phonenumbers.number_type(parsed)
    home_code = phonenumbers.country_code_for_region(region)
    # Another region sharing the country code (Jamaica in +1, Jersey in +44) is international
    # too: it is billed so, and it is where call-pumping fraud terminates.
    international = (
        parsed.country_code != home_code or phonenumbers.region_code_for_number(parsed) != region
    )
    if international and not plan.allow_international:
        return _decide(e164, "international", plan)
    if number_type == PhoneNumberType.PREMIUM_RATE:  # a foreign premium number needs both
        return _decide(e164, "premium", plan)
    if international:
        return _decide(e164, "international", plan)
    if number_type == PhoneNumberType.MOBILE:
        return _decide(e164, "mobile", plan)
    if number_type == PhoneNumberType.TOLL_FREE:
        return _decide(e164, "toll_free", plan)
    if number_type == PhoneNumberType.SHARED_COST:
        return _decide(e164, "shared_cost", plan)
    return _decide(e164, "national", plan)


def route_dialled(
    dialled: str, plan: DialPlan, is_extension: Callable[[str], bool]
) -> ToExtension | ToExternal | Refused:
    """Decide where a dialled Request-URI user part goes, and whether the plan allows it.

    Emergency numbers come first (with or without the outside-line prefix) so no extension can
    shadow them; then known extensions; then outside numbers, which need the external prefix
    when the plan has one (a leading `+` needs none). Without an external prefix, a refused
    string of extension length that does not start with the national or international prefix
    is answered as an unknown extension (404) rather than by how the number would be rated.
    """
    cleaned = _clean(dialled)
    if cleaned is None:
        return Refused(reason="not a diallable number", status=STATUS_NOT_FOUND)
    region = plan.country.upper()
    prefix = plan.external_prefix
    candidates = [cleaned]
    if prefix and cleaned.startswith(prefix):
        candidates.append(cleaned[len(prefix) :])
    for candidate in candidates:
        if candidate.isdigit() and shortnumberinfo.is_emergency_number(candidate, region):
            return _decide(candidate, "emergency", plan)
    if not cleaned.startswith("+") and is_extension(cleaned):
        return ToExtension(number=cleaned)
    if cleaned.startswith("+"):
        return _classify(cleaned, plan)
    if prefix:
        if not cleaned.startswith(prefix):
            return _unknown_extension(cleaned, plan)
        outside = cleaned[len(prefix) :]
        if not outside:
            return Refused(reason="number is incomplete", status=STATUS_ADDRESS_INCOMPLETE)
        return _classify(outside, plan)
    low, high = plan.extension_digits
    if cleaned.isdigit() and len(cleaned) < low:
        return _classify_short(cleaned, plan)
    routed = _classify(cleaned, plan)
    if (
        isinstance(routed, Refused)
        and cleaned.isdigit()
        and low <= len(cleaned) <= high
        and not _starts_like_outside_number(cleaned, region)
    ):
        return Refused(reason="no such extension", status=STATUS_NOT_FOUND)
    return routed


def _starts_like_outside_number(digits: str, region: str) -> bool:
    """True when `digits` begin with the region's national or international dialling prefix."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return False
    prefixes = (metadata.national_prefix, metadata.international_prefix)
    return any(prefix and prefix.isdigit() and digits.startswith(prefix) for prefix in prefixes)


def _classify_short(digits: str, plan: DialPlan) -> Route:
    """Digits shorter than any extension: a short service number, or an incomplete dial."""
    routed = _classify(digits, plan)
    if isinstance(routed, Refused) and routed.status == STATUS_NOT_FOUND:
        return Refused(reason="number is incomplete", status=STATUS_ADDRESS_INCOMPLETE)
    return routed


def _unknown_extension(cleaned: str, plan: DialPlan) -> Refused:
    low, _high = plan.extension_digits
    if cleaned.isdigit() and len(cleaned) < low:
        return Refused(reason="number is incomplete", status=STATUS_ADDRESS_INCOMPLETE)
    return Refused(reason="no such extension", status=STATUS_NOT_FOUND)


@functools.lru_cache(maxsize=E164_CACHE_SIZE)
def to_e164(number: str, country: str) -> str | None:
    """The E.164 form of a DID or caller ID given in national or international form, or None."""
    cleaned = _clean(number)
    if cleaned is None or "*" in cleaned or "#" in cleaned:
        return None
    try:
        parsed = phonenumbers.parse(cleaned, country.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
