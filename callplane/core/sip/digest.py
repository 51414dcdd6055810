"""SIP digest authentication: challenges, verification and answers.

The server side (`DigestServer`) challenges phones and checks their answers; the client side
(`answer_challenge`, `pick_challenge`) lets a trunk answer its provider's 401/407. Hashing follows
RFC 3261 §22.4 with the algorithms of RFC 7616 §3.4 that RFC 8760 brings to SIP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from callplane.core.sip.errors import LocalProtocolError, SipParseError
from callplane.core.sip.headers import format_auth_header, parse_auth_header

ALGORITHMS = ("SHA-256", "MD5")  # RFC 8760 §2.4: a UAS SHOULD offer SHA-256 first, then MD5

NONCE_TTL_S = 300.0  # five minutes: long enough for a phone to re-REGISTER or re-INVITE on one
# nonce (RFC 7616 §5.5 leaves the lifetime to the server), short enough that a captured nonce dies
# soon; Kamailio's auth module uses the same default (nonce_expire = 300).

MAX_TRACKED_NONCES = 20_000  # bounded memory: an entry (~200 bytes) is created only after a
# correct answer, so only authenticated phones fill it; 20 000 covers every phone of one node
# re-registering within a nonce lifetime, in about 4 MB.

NONCE_SALT_BYTES = 12  # 96 random bits make two nonces issued in the same millisecond distinct
NONCE_MAC_BYTES = 16  # 128-bit truncated HMAC-SHA-256: forging a nonce means guessing 2**128 values
_NONCE_STAMP = struct.Struct(">q")  # milliseconds since the epoch, signed 64-bit
_NONCE_BYTES = _NONCE_STAMP.size + NONCE_SALT_BYTES + NONCE_MAC_BYTES

DUMMY_PASSWORD = "callplane-unknown-user"  # hashed for unknown users so they cost the same work

REASON_OK = "authenticated"
REASON_BAD_CREDENTIALS = "wrong username or password"  # also for unknown users (no enumeration)
REASON_WRONG_REALM = "realm is not ours"
REASON_UNSUPPORTED_ALGORITHM = "unsupported algorithm"
REASON_UNSUPPORTED_QOP = "unsupported qop"
REASON_FORGED_NONCE = "nonce was not issued by us"
REASON_OPAQUE_MISMATCH = "opaque was not issued by us"
REASON_URI_MISMATCH = "digest uri does not match the Request-URI"
REASON_EXPIRED_NONCE = "nonce expired"
REASON_REPLAY = "nonce count replayed"

# RFC 7616 §3.4 and RFC 8760 §2: algorithm token -> hashlib name; "-sess" variants share the hash.
_HASHES = {
    name: hashlib_name
    for name, hashlib_name in (("MD5", "md5"), ("SHA-256", "sha256"), ("SHA-512-256", "sha512_256"))
    if hashlib_name in hashlib.algorithms_available
}
_SESS_SUFFIX = "-sess"

# Strongest first; pick_challenge prefers an earlier entry (RFC 8760 §2.4).
_PREFERENCE = tuple(
    name
    for base in ("SHA-512-256", "SHA-256", "MD5")
    if base in _HASHES
    for name in (base, base + _SESS_SUFFIX)
)
SUPPORTED_ALGORITHMS = _PREFERENCE
_CANONICAL = {name.upper(): name for name in _PREFERENCE}

_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")  # RFC 7616 §3.4: nc is exactly 8LHEX
_SPENT_NC = 0x1_0000_0000  # above any 8-hex nc: recorded for a nonce that is single-use


class DigestChallengeError(SipParseError):
    """A peer's challenge that we cannot answer (no supported algorithm or qop).

    A parse error of the challenge header, so callers catching `SipParseError` cover it too.
    """


@dataclass(frozen=True, slots=True)
class Credentials:
    """The Digest parameters of an Authorization / Proxy-Authorization value (RFC 7616 §3.4)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    cnonce: str | None
    nc: str | None
    qop: str | None
    opaque: str | None


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """What `DigestServer.verify` decided; `reason` is for the log, never sent to the peer."""

    ok: bool
    username: str | None
    stale: bool
    reason: str


def _check_quotable(value: str) -> str:
    """`value`, refused when a quoted-string cannot carry it (RFC 3261 §25.1: no CR or LF)."""
    if "\r" in value or "\n" in value:
        raise LocalProtocolError("a digest parameter cannot contain CR or LF")
    return value


def _canonical_algorithm(token: str) -> str:
    """The algorithm token as RFC 7616 spells it when we know it, else the token unchanged."""
    return _CANONICAL.get(token.upper(), token)


def _hash(algorithm: str, text: str) -> str:
    # Header values are decoded with surrogateescape, so a username may hold lone surrogates
    # from bytes that were not UTF-8: they must hash (and fail to match), never raise.
    base = algorithm.removesuffix(_SESS_SUFFIX)
    return hashlib.new(_HASHES[base], text.encode("utf-8", "surrogatepass")).hexdigest()


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password) (RFC 7616 §3.4.2), the value to store instead of a password."""
    return _hash(_canonical_algorithm(algorithm), f"{username}:{realm}:{password}")


def _response(
    algorithm: str,
    ha1: str,
    *,
    method: str,
    uri: str,
    nonce: str,
    cnonce: str | None,
    nc: str | None,
    qop: str | None,
) -> str:
    """The request-digest of RFC 7616 §3.4.1 (qop=auth) or RFC 2069 (no qop)."""
    if algorithm.endswith(_SESS_SUFFIX):
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce or ''}")  # RFC 7616 §3.4.2
    ha2 = _hash(algorithm, f"{method}:{uri}")  # RFC 7616 §3.4.3 for qop=auth
    if qop is None:
        return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")
    return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def parse_credentials(authorization_value: str) -> Credentials:
    """Parse an Authorization / Proxy-Authorization value (RFC 3261 §22.4, RFC 7616 §3.4).

    Raises `SipParseError` naming the fault: another scheme, a missing parameter, a malformed nc.
    """
    scheme, params = parse_auth_header(authorization_value)
    if scheme.lower() != "digest":
        raise SipParseError(f"authentication scheme {scheme!r} is not Digest")
    for name in ("username", "realm", "nonce", "uri", "response"):
        if name not in params:
            raise SipParseError(f"Digest credentials lack the {name!r} parameter")
    qop = params.get("qop")
    if qop is not None:
        qop = qop.lower()
        for name in ("cnonce", "nc"):  # RFC 7616 §3.4: both MUST be sent with qop
            if name not in params:
                raise SipParseError(f"Digest credentials with qop lack the {name!r} parameter")
    nc = params.get("nc")
    if nc is not None and _NC_RE.fullmatch(nc) is None:
        raise SipParseError("Digest nc is not 8 hexadecimal digits")
    return Credentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"],
        algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),  # RFC 7616 §3.4: default
        cnonce=params.get("cnonce"),
        nc=nc,
        qop=qop,
        opaque=params.get("opaque"),
    )


class DigestServer:
    """Issues challenges and verifies answers for one realm.

    Nonces are self-validating (HMAC of a timestamp with a server secret), so they survive without
    state; nonce counts are tracked per nonce to reject replays (qop=auth requires nc strictly
    increasing, RFC 7616 §3.4). An answer without qop (RFC 2069 style) makes its nonce single-use.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        nonce_ttl_s: float = NONCE_TTL_S,
        algorithms: tuple[str, ...] = ALGORITHMS,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        max_tracked_nonces: int = MAX_TRACKED_NONCES,
    ) -> None:
        if not secret:
            raise LocalProtocolError("the digest server secret must not be empty")
        canonical = tuple(_canonical_algorithm(name) for name in algorithms)
        unknown = [name for name in canonical if name not in _CANONICAL.values()]
        if unknown or not canonical:
            raise LocalProtocolError(f"unsupported digest algorithms: {unknown or 'none given'}")
        self.realm = realm
        self.algorithms = canonical
        self._secret = secret
        self._nonce_ttl_ms = int(nonce_ttl_s * 1000)
        self._random_bytes = random_bytes
        self._max_tracked = max_tracked_nonces
        self._last_nc: OrderedDict[str, int] = OrderedDict()
        self._forgotten_up_to_ms: int | None = None
        self.opaque = hmac.new(secret, b"opaque\0" + realm.encode(), hashlib.sha256).hexdigest()[
            :32
        ]

    def _mac(self, body: bytes) -> bytes:
        message = self.realm.encode() + b"\0" + body
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:NONCE_MAC_BYTES]

    def _new_nonce(self, now: float) -> str:
        body = _NONCE_STAMP.pack(int(now * 1000)) + self._random_bytes(NONCE_SALT_BYTES)
        return base64.urlsafe_b64encode(body + self._mac(body)).decode("ascii").rstrip("=")

    def _nonce_stamp_ms(self, nonce: str) -> int | None:
        """The issue time in ms of a nonce we issued, or None for anything we did not issue."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_BYTES:
            return None
        body, mac = raw[:-NONCE_MAC_BYTES], raw[-NONCE_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        stamp_ms: int = _NONCE_STAMP.unpack_from(body)[0]
        return stamp_ms

    def challenge_headers(self, now: float, *, stale: bool = False) -> list[str]:
        """Values for WWW-Authenticate / Proxy-Authenticate, one per algorithm (RFC 8760 §2.4).

        All share one fresh nonce; `stale=true` tells the phone to retry with it without asking
        the user for a password (RFC 7616 §3.3).
        """
        nonce = self._new_nonce(now)
        stale_param = [("stale", "true", False)] if stale else []
        return [
            format_auth_header(
                "Digest",
                [
                    ("realm", _check_quotable(self.realm), True),
                    ("nonce", nonce, True),
                    ("opaque", self.opaque, True),
                    ("algorithm", algorithm, False),
                    ("qop", "auth", True),
                    *stale_param,
                ],
            )
            for algorithm in self.algorithms
        ]

    def verify(
        self,
        method: str,
        credentials: Credentials,
        password: str | None,
        now: float,
        *,
        request_uri: str | None = None,
    ) -> AuthOutcome:
        """Check an answer against the user's password; None means the user is unknown.

        An unknown user is hashed against a dummy password, so the work and the outcome are those
        of a wrong password and a scanner cannot tell which usernames exist.
        """
        ha1: str | None = None
        if password is not None and credentials.algorithm in self.algorithms:
            ha1 = compute_ha1(credentials.username, self.realm, password, credentials.algorithm)
        return self.verify_ha1(method, credentials, ha1, now, request_uri=request_uri)

    def verify_ha1(
        self,
        method: str,
        credentials: Credentials,
        ha1: str | None,
        now: float,
        *,
        request_uri: str | None = None,
    ) -> AuthOutcome:
        """As `verify`, with a stored H(username:realm:password) for the credentials' algorithm."""
        algorithm = credentials.algorithm
        if credentials.realm != self.realm:
            return _refused(REASON_WRONG_REALM)
        if algorithm not in self.algorithms:
            return _refused(REASON_UNSUPPORTED_ALGORITHM)
        if credentials.qop not in (None, "auth"):
            return _refused(REASON_UNSUPPORTED_QOP)
        stamp_ms = self._nonce_stamp_ms(credentials.nonce)
        if stamp_ms is None:
            return _refused(REASON_FORGED_NONCE)
        if credentials.opaque is not None and not hmac.compare_digest(
            credentials.opaque.encode("utf-8", "surrogatepass"), self.opaque.encode()
        ):
            return _refused(REASON_OPAQUE_MISMATCH)
        if request_uri is not None and credentials.uri != request_uri:
            return _refused(REASON_URI_MISMATCH)
        known = ha1 is not None
        if ha1 is None:
            ha1 = compute_ha1(credentials.username, self.realm, DUMMY_PASSWORD, algorithm)
        expected = _response(
            algorithm,
            ha1,
            method=method,
            uri=credentials.uri,
            nonce=credentials.nonce,
            cnonce=credentials.cnonce,
            nc=credentials.nc,
            qop=credentials.qop,
        )
        answered = credentials.response.lower().encode("utf-8", "surrogatepass")
        matches = hmac.compare_digest(expected.encode(), answered)
        if not (matches and known):
            return _refused(REASON_BAD_CREDENTIALS)
        now_ms = int(now * 1000)
        if not 0 <= now_ms - stamp_ms <= self._nonce_ttl_ms:
            return AuthOutcome(ok=False, username=None, stale=True, reason=REASON_EXPIRED_NONCE)
        if not self._advance_count(credentials, stamp_ms, now_ms):
            return AuthOutcome(ok=False, username=None, stale=True, reason=REASON_REPLAY)
        return AuthOutcome(ok=True, username=credentials.username, stale=False, reason=REASON_OK)

    def _advance_count(self, credentials: Credentials, stamp_ms: int, now_ms: int) -> bool:
        """Record the nonce count; False when it does not exceed the last one seen (a replay).

        A qop-less answer counts as nc=1 and cannot be exceeded, making its nonce single-use. A
        nonce forgotten to bound memory cannot be told from a replay, so it is refused too, and
        the phone retries on a fresh nonce after `stale=true`.
        """
        nc = int(credentials.nc, 16) if credentials.qop is not None and credentials.nc else 1
        single_use = credentials.qop is None
        nonce = credentials.nonce
        last = self._last_nc.get(nonce)
        if last is None:
            if self._forgotten_up_to_ms is not None and stamp_ms <= self._forgotten_up_to_ms:
                return False
            last = 0
        if nc <= last:
            return False
        self._last_nc[nonce] = _SPENT_NC if single_use else nc
        self._last_nc.move_to_end(nonce)
        self._forget(now_ms)
        return True

    def _forget(self, now_ms: int) -> None:
        """Drop expired nonces, then the least recently used ones beyond the cap."""
        while self._last_nc:
            oldest = next(iter(self._last_nc))
            stamp_ms = self._nonce_stamp_ms(oldest)
            expired = stamp_ms is None or now_ms - stamp_ms > self._nonce_ttl_ms
            if not expired and len(self._last_nc) <= self._max_tracked:
                break
            self._last_nc.popitem(last=False)
            if not expired and stamp_ms is not None:
                floor = self._forgotten_up_to_ms
                self._forgotten_up_to_ms = stamp_ms if floor is None else max(floor, stamp_ms)


def _refused(reason: str) -> AuthOutcome:
    return AuthOutcome(ok=False, username=None, stale=False, reason=reason)


def _challenge_params(www_authenticate: str) -> dict[str, str]:
    scheme, params = parse_auth_header(www_authenticate)
    if scheme.lower() != "digest":
        raise DigestChallengeError(f"authentication scheme {scheme!r} is not Digest")
    for name in ("realm", "nonce"):
        if name not in params:
            raise SipParseError(f"Digest challenge lacks the {name!r} parameter")
    algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
    if algorithm not in _CANONICAL.values():
        raise DigestChallengeError(f"Digest algorithm {algorithm!r} is not supported")
    if "qop" in params and "auth" not in _qop_options(params["qop"]):
        raise DigestChallengeError(f"Digest qop {params['qop']!r} offers no 'auth'")
    return params


def _qop_options(qop: str) -> list[str]:
    return [option.strip(" \t").lower() for option in qop.split(",")]


def answer_challenge(
    www_authenticate: str,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
) -> str:
    """The Authorization / Proxy-Authorization value answering one Digest challenge.

    For trunks answering a provider's 401/407 (RFC 3261 §22.2): MD5, MD5-sess, SHA-256,
    SHA-256-sess (and SHA-512-256 where hashlib has it), with qop=auth or without qop.
    Raises `DigestChallengeError` for a challenge we cannot answer.
    """
    if not 0 < nc <= 0xFFFFFFFF:
        raise LocalProtocolError(f"nonce count {nc} does not fit 8 hex digits")
    params = _challenge_params(www_authenticate)
    algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
    qop = "auth" if "qop" in params else None
    nc_text = f"{nc:08x}" if qop else None
    used_cnonce = cnonce if qop or algorithm.endswith(_SESS_SUFFIX) else None
    realm, nonce = params["realm"], params["nonce"]
    response = _response(
        algorithm,
        compute_ha1(username, realm, password, algorithm),
        method=method,
        uri=uri,
        nonce=nonce,
        cnonce=used_cnonce,
        nc=nc_text,
        qop=qop,
    )
    parts = [
        ("username", _check_quotable(username), True),
        ("realm", realm, True),
        ("nonce", nonce, True),
        ("uri", _check_quotable(uri), True),
        ("response", response, True),
    ]
    if "algorithm" in params:
        parts.append(("algorithm", algorithm, False))
    if used_cnonce is not None:
        parts.append(("cnonce", _check_quotable(used_cnonce), True))
    if qop is not None and nc_text is not None:
        parts += [("qop", qop, False), ("nc", nc_text, False)]  # RFC 7616 §3.4: not quoted
    if "opaque" in params:
        parts.append(("opaque", params["opaque"], True))
    return format_auth_header("Digest", parts)


def pick_challenge(values: Iterable[str]) -> str:
    """The strongest challenge we can answer among several (RFC 8760 §2.4: SHA-256 over MD5).

    Among equals the first offered wins. Raises `DigestChallengeError` when none is usable.
    """
    best: tuple[int, str] | None = None
    for value in values:
        try:
            params = _challenge_params(value)
        except SipParseError:
            continue
        rank = _PREFERENCE.index(_canonical_algorithm(params.get("algorithm", "MD5")))
        if best is None or rank < best[0]:
            best = (rank, value)
    if best is None:
        raise DigestChallengeError("no Digest challenge with a supported algorithm and qop")
    return best[1]
