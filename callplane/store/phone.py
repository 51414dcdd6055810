"""Phone numbers as the store keeps them: E.164 strings, parsed in the tenant's country."""

from __future__ import annotations

import phonenumbers

from callplane.store.errors import InvalidValue


def to_e164(raw: str, country: str) -> str:
    """Normalise `raw` ("01 23 45 67 89", "+33 1 23...") to E.164 ("+33123456789").

    Only the number's length is checked against the country's plan (`is_possible_number`), not its
    allocation: the metadata lags new ranges, and a provider's DID must never be refused for that.
    """
    try:
        parsed = phonenumbers.parse(raw, country.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidValue(f"'{raw}' is not a phone number ({exc._msg})") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidValue(f"'{raw}' is not a possible phone number in {country.upper()}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_country(code: str) -> bool:
    """True for an ISO 3166-1 alpha-2 region known to the numbering metadata ("FR", "US"...)."""
    return code.upper() in phonenumbers.SUPPORTED_REGIONS
