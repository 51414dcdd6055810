"""Named SIP errors, split as h11 does between the peer's fault and our own misuse."""

from __future__ import annotations


class SipError(Exception):
    """Base of every SIP error raised by the core."""


class RemoteProtocolError(SipError):
    """The peer sent something wrong; `status` and `reason` are what to answer, if anything."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class SipParseError(RemoteProtocolError):
    """Bytes that are not a well-formed SIP message; the reason names the fault."""


class LocalProtocolError(SipError):
    """Our own code asked for something the protocol forbids (a bug on our side)."""
