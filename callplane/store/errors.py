"""Named errors of the store: raised at the fault, caught by the CLI or the PBX at the edge."""

from __future__ import annotations


class StoreError(Exception):
    """Any refusal of the store; the message is one line an operator can act on."""


class NotFound(StoreError):
    """A named tenant, extension, trunk or DID does not exist."""


class AlreadyExists(StoreError):
    """A row with the same unique key (tenant name, extension number, DID number...) exists."""


class InvalidValue(StoreError):
    """A field value is out of its domain (unknown transport, malformed phone number...)."""


class ConfigFileError(StoreError):
    """A configuration file was rejected; `problems` holds one `FILE: path: message` line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
