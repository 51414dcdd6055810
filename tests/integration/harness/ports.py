"""Free ports on 127.0.0.1 for servers and peers that a test starts."""

from __future__ import annotations

import contextlib
import socket

LOOPBACK = "127.0.0.1"
MAX_ATTEMPTS = 200  # each attempt is one ephemeral port; collisions with both protocols are rare

_handed_out: set[int] = set()


class NoFreePortError(RuntimeError):
    """No port could be bound on 127.0.0.1 for both UDP and TCP."""


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_udp_tcp_port() -> int:
    """Return a port free for both UDP and TCP on 127.0.0.1, never the same twice in a run.

    SIP listens on both transports on one port (RFC 3261 §18), so a peer needs both free.
    """
    for _ in range(MAX_ATTEMPTS):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port: int = udp.getsockname()[1]
        if port in _handed_out:
            continue
        if _bindable(port, socket.SOCK_STREAM) and _bindable(port, socket.SOCK_DGRAM):
            _handed_out.add(port)
            return port
    raise NoFreePortError(f"no port free for UDP and TCP after {MAX_ATTEMPTS} attempts")


def udp_port_in_use(port: int) -> bool:
    """True when something on 127.0.0.1 holds the UDP port (a peer has started listening)."""
    return not _bindable(port, socket.SOCK_DGRAM)


def tcp_port_listening(port: int) -> bool:
    """True when a TCP listener accepts connections on 127.0.0.1:port."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((LOOPBACK, port)) == 0
