"""Per-source request-rate limiting as Kamailio's pike module does, and failed-auth counting.

Both are pure: the shell passes `now` and logs what they decide. Memory is bounded because phones
on the internet are scanned all day, often from forged source addresses.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Iterable
from enum import Enum

DEFAULT_RATE = 16  # requests per window: Kamailio pike's reqs_density_per_unit default is 30 per
# 2 s; a phone's burst (REGISTER + SUBSCRIBEs + an INVITE with its auth retry) stays well below 16
DEFAULT_WINDOW_S = 2.0  # pike's sampling_time_unit default
DEFAULT_BLOCK_S = 60.0  # long enough to make a scanner move on, short enough that a phone gone
# mad (a registration loop) recovers by itself within a minute

MAX_TRACKED_SOURCES = 20_000  # a spoofed-source UDP flood creates one entry per forged address;
# 20 000 entries of ~1 KB keep the guard near 20 MB while far exceeding the phones and trunks one
# node serves. Beyond it the least recently seen source is forgotten.

DEFAULT_AUTH_WINDOW_S = 600.0  # fail2ban's default findtime (10 min)
DEFAULT_AUTH_THRESHOLD = 5  # fail2ban's default maxretry
MAX_FAILURES_COUNTED = (
    1_000  # per source: the count saturates here, keeping memory per source small
)
MAX_LOGGED_USERNAME = 64  # characters of a username written to the log; the rest is cut


class FloodVerdict(Enum):
    """What `FloodGuard.check` decided for one request."""

    ALLOWED = "allowed"
    BLOCKED_NOW = "blocked now"  # this request crossed the rate: the shell logs the block
    BLOCKED = "blocked"  # the source was already blocked


def _normalized(host: str) -> str:
    """The canonical text of an IP address (IPv6 zeros compressed), or a host name unchanged."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


class _Trusted:
    """Exact hosts and CIDR networks exempt from the limits (trunk providers, the local proxy)."""

    def __init__(self) -> None:
        self._hosts: set[str] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []

    def add(self, host: str) -> None:
        if "/" in host:
            self._networks.append(ipaddress.ip_network(host, strict=False))
            return
        self._hosts.update({host, _normalized(host)})

    def __contains__(self, host: str) -> bool:
        if host in self._hosts:
            return True
        if not self._networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


class FloodGuard:
    """Blocks a source that sends more than `max_requests` within `window_s`, for `block_s`.

    A sliding window per source (the policy of Kamailio's pike, no RFC): the request that would
    be the (max_requests + 1)-th inside the window starts the block. Requests arriving while
    blocked are refused without extending it. Trusted hosts (exact addresses or CIDR networks)
    are never counted.
    """

    def __init__(
        self,
        *,
        max_requests: int = DEFAULT_RATE,
        window_s: float = DEFAULT_WINDOW_S,
        block_s: float = DEFAULT_BLOCK_S,
        trusted: Iterable[str] = (),
        max_sources: int = MAX_TRACKED_SOURCES,
    ) -> None:
        if max_requests < 1 or window_s <= 0 or block_s < 0 or max_sources < 1:
            raise ValueError("flood limits must be positive")
        self.max_requests = max_requests
        self.window_s = window_s
        self.block_s = block_s
        self._max_sources = max_sources
        self._trusted = _Trusted()
        for host in trusted:
            self._trusted.add(host)
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()  # least recently seen first
        self._blocked: dict[str, float] = {}  # host -> end of its block

    def trust(self, host: str) -> None:
        """Exempt `host` (an address or a CIDR network) from now on, lifting any block on it."""
        self._trusted.add(host)
        for known in [h for h in (*self._blocked, *self._recent) if h in self._trusted]:
            self._blocked.pop(known, None)
            self._recent.pop(known, None)

    def allow(self, source_host: str, now: float) -> bool:
        """True when a request from `source_host` at `now` should be processed."""
        return self.check(source_host, now) is FloodVerdict.ALLOWED

    def check(self, source_host: str, now: float) -> FloodVerdict:
        """As `allow`, telling apart the request that starts a block (for the shell's log line)."""
        if source_host in self._trusted:
            return FloodVerdict.ALLOWED
        self._prune(now)
        until = self._blocked.get(source_host)
        if until is not None:
            if now < until:
                return FloodVerdict.BLOCKED
            del self._blocked[source_host]
        times = self._recent.get(source_host)
        if times is None:
            times = deque(maxlen=self.max_requests)
            self._recent[source_host] = times
            while len(self._recent) > self._max_sources:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(source_host)
        horizon = now - self.window_s
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) >= self.max_requests:
            del self._recent[source_host]
            self._blocked[source_host] = now + self.block_s
            while len(self._blocked) > self._max_sources:
                del self._blocked[min(self._blocked, key=self._blocked.__getitem__)]
            return FloodVerdict.BLOCKED_NOW
        times.append(now)
        return FloodVerdict.ALLOWED

    def blocked(self, now: float) -> list[str]:
        """The sources blocked at `now`, sorted."""
        return sorted(host for host, until in self._blocked.items() if now < until)

    def tracked_sources(self) -> int:
        """How many sources the guard remembers (blocked or recently seen)."""
        return len(self._recent) + len(self._blocked)

    def block_log_line(self, source_host: str) -> str:
        """The line the shell logs when `check` answers BLOCKED_NOW."""
        return f"flood: blocking {source_host} for {self.block_s:g} s"

    def _prune(self, now: float) -> None:
        """Forget sources idle for a whole window, least recently seen first, and ended blocks."""
        horizon = now - self.window_s
        while self._recent:
            host, times = next(iter(self._recent.items()))
            if times and times[-1] > horizon:
                break
            del self._recent[host]
        for host in [h for h, until in self._blocked.items() if until <= now]:
            del self._blocked[host]


def _log_safe(text: str) -> str:
    """`text` with quotes, backslashes and control characters escaped, cut to a bounded length.

    Escaping `"` means a username can never contain the `user "` that ends the failregex, so a
    crafted username cannot make fail2ban ban someone else's address.
    """
    out: list[str] = []
    for char in text[:MAX_LOGGED_USERNAME]:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and char.isascii():
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    if len(text) > MAX_LOGGED_USERNAME:
        out.append("...")
    return "".join(out)


class AuthFailures:
    """Counts failed authentications per source over a sliding window, for logs and bans.

    The shell logs `log_line(...)` at each failure; fail2ban matches it with::

        [Definition]
        failregex = auth failure from <HOST> user "

    (the first match in a line wins, and usernames are escaped so they cannot hold `user "`).
    """

    def __init__(
        self,
        *,
        window_s: float = DEFAULT_AUTH_WINDOW_S,
        threshold: int = DEFAULT_AUTH_THRESHOLD,
        max_sources: int = MAX_TRACKED_SOURCES,
    ) -> None:
        if window_s <= 0 or threshold < 1 or max_sources < 1:
            raise ValueError("auth failure limits must be positive")
        self.window_s = window_s
        self.threshold = threshold
        self._max_sources = max_sources
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def record(self, source_host: str, username: str, now: float) -> int:
        """Count one failure from `source_host`; returns the failures in the window, this one
        included. `username` is accepted for the caller's log line and not stored."""
        self._prune(now)
        times = self._failures.pop(source_host, None)
        if times is None:
            times = deque(maxlen=MAX_FAILURES_COUNTED)
        self._failures[source_host] = times
        while len(self._failures) > self._max_sources:
            self._failures.popitem(last=False)
        self._drop_old(times, now)
        times.append(now)
        return len(times)

    def count(self, source_host: str, now: float) -> int:
        """The failures from `source_host` within the window ending at `now`."""
        times = self._failures.get(source_host)
        if times is None:
            return 0
        self._drop_old(times, now)
        return len(times)

    def over_threshold(self, source_host: str, now: float) -> bool:
        """True when `source_host` has failed `threshold` times or more within the window."""
        return self.count(source_host, now) >= self.threshold

    def clear(self, source_host: str) -> None:
        """Forget the failures of a source, e.g. once it authenticates."""
        self._failures.pop(source_host, None)

    @staticmethod
    def log_line(source_host: str, username: str, count: int) -> str:
        """A fixed-format line fail2ban can match: `auth failure from <HOST> user "..." count N`."""
        return f'auth failure from {source_host} user "{_log_safe(username)}" count {count}'

    def _drop_old(self, times: deque[float], now: float) -> None:
        horizon = now - self.window_s
        while times and times[0] <= horizon:
            times.popleft()

    def _prune(self, now: float) -> None:
        horizon = now - self.window_s
        while self._failures:
            host, times = next(iter(self._failures.items()))
            if times and times[-1] > horizon:
                break
            del self._failures[host]
