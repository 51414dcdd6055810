"""Transport addresses as the core sees them: where a message came from or goes to."""

from __future__ import annotations

from dataclasses import dataclass

RELIABLE_TRANSPORTS = frozenset({"TCP", "TLS", "WS", "WSS"})


@dataclass(frozen=True, slots=True)
class Address:
    """A transport endpoint: `transport` is upper case ("UDP", "TCP", ...), `host` an IP literal."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        """RFC 3261 §17: timers A, E and G run only on unreliable transports."""
        return self.transport in RELIABLE_TRANSPORTS

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport.lower()}:{host}:{self.port}"
