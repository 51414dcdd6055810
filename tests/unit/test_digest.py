"""Digest authentication: RFC vectors, the server's checks and the trunk's answers."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callplane.core.sip.digest import (
    ALGORITHMS,
    MAX_TRACKED_NONCES,
    NONCE_TTL_S,
    REASON_BAD_CREDENTIALS,
    REASON_EXPIRED_NONCE,
    REASON_FORGED_NONCE,
    REASON_OPAQUE_MISMATCH,
    REASON_REPLAY,
    REASON_UNSUPPORTED_ALGORITHM,
    REASON_URI_MISMATCH,
    REASON_WRONG_REALM,
    SUPPORTED_ALGORITHMS,
    Credentials,
    DigestChallengeError,
    DigestServer,
    answer_challenge,
    compute_ha1,
    parse_credentials,
    pick_challenge,
)
from callplane.core.sip.errors import SipParseError

# RFC 7616 §3.9.1: user "Mufasa", password "Circle of Life", GET /dir/index.html.
RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"

REALM = "pbx.example.com"
URI = "sip:pbx.example.com"
SECRET = b"0123456789abcdef0123456789abcdef"
T0 = 1_700_000_000.0


def counter_bytes() -> Callable[[int], bytes]:
    """A deterministic stand-in for secrets.token_bytes: distinct values, reproducible runs."""
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def make_server(
    algorithms: tuple[str, ...] = ALGORITHMS, max_tracked_nonces: int = MAX_TRACKED_NONCES
) -> DigestServer:
    return DigestServer(
        REALM,
        SECRET,
        algorithms=algorithms,
        random_bytes=counter_bytes(),
        max_tracked_nonces=max_tracked_nonces,
    )


def answer(
    server: DigestServer,
    now: float,
    *,
    username: str = "1001",
    password: str = "s3cret",
    method: str = "REGISTER",
    nc: int = 1,
    challenge: str | None = None,
) -> Credentials:
    value = answer_challenge(
        challenge or server.challenge_headers(now)[0],
        method=method,
        uri=URI,
        username=username,
        password=password,
        cnonce="0a4f113b",
        nc=nc,
    )
    return parse_credentials(value)


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_answer_matches_rfc7616_worked_example(algorithm: str, response: str) -> None:
    value = answer_challenge(
        RFC7616_CHALLENGE.format(alg=algorithm),
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        cnonce=RFC7616_CNONCE,
    )
    credentials = parse_credentials(value)
    assert credentials.response == response
    assert credentials.algorithm == algorithm
    assert credentials.qop == "auth"
    assert credentials.nc == "00000001"
    assert credentials.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    assert "qop=auth," in value and "nc=00000001" in value  # RFC 7616 §3.4: unquoted


def test_answer_matches_rfc2617_md5_example() -> None:
    # RFC 2617 §3.5, the example RFC 3261 §22.4 builds on (challenge has no algorithm parameter).
    value = answer_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"',
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        cnonce="0a4f113b",
    )
    assert parse_credentials(value).response == "6629fae49393a05397450978507c4ef1"
    assert "algorithm" not in value


def test_answer_without_qop_uses_rfc2069_digest() -> None:
    value = answer_challenge(
        'Digest realm="r", nonce="n"',
        method="INVITE",
        uri="sip:x@y",
        username="u",
        password="p",
        cnonce="c",
    )
    credentials = parse_credentials(value)
    ha1 = compute_ha1("u", "r", "p", "MD5")
    ha2 = hashlib.md5(b"INVITE:sip:x@y").hexdigest()
    assert credentials.response == hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    assert credentials.qop is None and credentials.nc is None and credentials.cnonce is None


@pytest.mark.parametrize("algorithm", SUPPORTED_ALGORITHMS)
def test_round_trip_challenge_answer_verify(algorithm: str) -> None:
    server = make_server(algorithms=(algorithm,))
    credentials = answer(server, T0)
    outcome = server.verify("REGISTER", credentials, "s3cret", T0 + 1, request_uri=URI)
    assert outcome.ok and outcome.username == "1001" and not outcome.stale


def test_challenge_offers_sha256_first_then_md5_with_qop_and_opaque() -> None:
    server = make_server()
    sha, md5 = server.challenge_headers(T0)
    assert ALGORITHMS == ("SHA-256", "MD5")
    assert "algorithm=SHA-256" in sha and "algorithm=MD5" in md5
    for value in (sha, md5):
        assert 'qop="auth"' in value and 'opaque="' in value and "stale" not in value
    assert all("stale=true" in v for v in server.challenge_headers(T0, stale=True))


def test_phone_answering_md5_challenge_is_accepted() -> None:
    server = make_server()
    credentials = answer(server, T0, challenge=server.challenge_headers(T0)[1])
    assert credentials.algorithm == "MD5"
    assert server.verify("REGISTER", credentials, "s3cret", T0).ok


def test_wrong_password_is_refused() -> None:
    server = make_server()
    outcome = server.verify("REGISTER", answer(server, T0, password="guess"), "s3cret", T0)
    assert not outcome.ok and not outcome.stale and outcome.reason == REASON_BAD_CREDENTIALS


def test_unknown_user_and_wrong_password_are_indistinguishable() -> None:
    def attempt(password: str | None, now: float) -> tuple[object, list[str]]:
        server = make_server()
        credentials = answer(server, T0, password="guess")
        outcome = server.verify("REGISTER", credentials, password, now)
        return outcome, server.challenge_headers(now, stale=outcome.stale)

    for now in (T0 + 1, T0 + NONCE_TTL_S + 1):  # fresh and expired nonces alike
        unknown = attempt(None, now)
        wrong = attempt("s3cret", now)
        assert unknown == wrong
        assert unknown[0] == wrong[0]


def test_unknown_user_with_dummy_password_is_still_refused() -> None:
    server = make_server()
    credentials = answer(server, T0, password="callplane-unknown-user")
    outcome = server.verify("REGISTER", credentials, None, T0)
    assert not outcome.ok and outcome.reason == REASON_BAD_CREDENTIALS


def test_expired_nonce_with_correct_password_is_stale() -> None:
    server = make_server()
    credentials = answer(server, T0)
    outcome = server.verify("REGISTER", credentials, "s3cret", T0 + NONCE_TTL_S + 1)
    assert not outcome.ok and outcome.stale and outcome.reason == REASON_EXPIRED_NONCE
    fresh = answer(server, T0 + NONCE_TTL_S + 1)
    assert server.verify("REGISTER", fresh, "s3cret", T0 + NONCE_TTL_S + 2).ok


def test_expired_nonce_with_wrong_password_is_not_stale() -> None:
    server = make_server()
    credentials = answer(server, T0, password="guess")
    outcome = server.verify("REGISTER", credentials, "s3cret", T0 + NONCE_TTL_S + 1)
    assert not outcome.ok and not outcome.stale and outcome.reason == REASON_BAD_CREDENTIALS


def test_nonce_from_another_server_secret_is_forged() -> None:
    other = DigestServer(REALM, b"another secret", random_bytes=counter_bytes())
    credentials = answer(other, T0)
    outcome = make_server().verify("REGISTER", credentials, "s3cret", T0)
    assert not outcome.ok and not outcome.stale and outcome.reason == REASON_FORGED_NONCE


@pytest.mark.parametrize(
    "nonce", ["", "abc", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "%%%%"]
)
def test_made_up_nonce_is_forged(nonce: str) -> None:
    server = make_server()
    value = answer_challenge(
        f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=SHA-256',
        method="REGISTER",
        uri=URI,
        username="1001",
        password="s3cret",
        cnonce="c",
    )
    outcome = server.verify("REGISTER", parse_credentials(value), "s3cret", T0)
    assert outcome.reason == REASON_FORGED_NONCE and not outcome.ok


def test_tampered_nonce_timestamp_is_forged() -> None:
    server = make_server()
    header = server.challenge_headers(T0)[0]
    nonce = header.split('nonce="')[1].split('"')[0]
    tampered = ("B" if nonce[0] != "B" else "C") + nonce[1:]
    value = answer_challenge(
        header.replace(nonce, tampered),
        method="REGISTER",
        uri=URI,
        username="1001",
        password="s3cret",
        cnonce="c",
    )
    assert server.verify("REGISTER", parse_credentials(value), "s3cret", T0).reason == (
        REASON_FORGED_NONCE
    )


def test_nonce_count_replay_is_rejected() -> None:
    server = make_server()
    challenge = server.challenge_headers(T0)[0]
    first = answer(server, T0, challenge=challenge, nc=1)
    assert server.verify("REGISTER", first, "s3cret", T0).ok
    replay = server.verify("REGISTER", first, "s3cret", T0 + 1)
    assert not replay.ok and replay.reason == REASON_REPLAY
    second = answer(server, T0, challenge=challenge, nc=2)
    assert server.verify("REGISTER", second, "s3cret", T0 + 2).ok
    assert not server.verify("REGISTER", first, "s3cret", T0 + 3).ok


def test_answer_without_qop_makes_nonce_single_use() -> None:
    server = make_server()
    challenge = server.challenge_headers(T0)[0].replace(', qop="auth"', "")
    credentials = answer(server, T0, challenge=challenge)
    assert credentials.qop is None
    assert server.verify("REGISTER", credentials, "s3cret", T0).ok
    again = server.verify("REGISTER", credentials, "s3cret", T0 + 1)
    assert not again.ok and again.stale


def test_forgotten_nonce_is_refused_rather_than_replayable() -> None:
    server = make_server(max_tracked_nonces=2)
    answers = [answer(server, T0 + i) for i in range(3)]
    for i, credentials in enumerate(answers):
        assert server.verify("REGISTER", credentials, "s3cret", T0 + 10 + i).ok
    assert not server.verify("REGISTER", answers[0], "s3cret", T0 + 20).ok


def test_tracked_nonces_stay_bounded() -> None:
    assert MAX_TRACKED_NONCES > 0
    server = make_server(max_tracked_nonces=5)
    for i in range(50):
        assert server.verify("REGISTER", answer(server, T0 + i), "s3cret", T0 + i).ok
    assert len(server._last_nc) <= 5


def test_wrong_realm_unsupported_algorithm_and_uri_mismatch() -> None:
    server = make_server(algorithms=("SHA-256",))
    other_realm = DigestServer("evil.example", SECRET, random_bytes=counter_bytes())
    assert (
        server.verify("REGISTER", answer(other_realm, T0), "s3cret", T0).reason
        == REASON_WRONG_REALM
    )
    md5 = answer(server, T0, challenge=server.challenge_headers(T0)[0].replace("SHA-256", "MD5"))
    assert server.verify("REGISTER", md5, "s3cret", T0).reason == REASON_UNSUPPORTED_ALGORITHM
    credentials = answer(server, T0)
    outcome = server.verify("REGISTER", credentials, "s3cret", T0, request_uri="sip:other")
    assert outcome.reason == REASON_URI_MISMATCH and not outcome.ok


def test_opaque_from_elsewhere_is_refused() -> None:
    server = make_server()
    challenge = server.challenge_headers(T0)[0].replace(server.opaque, "someone-else")
    outcome = server.verify("REGISTER", answer(server, T0, challenge=challenge), "s3cret", T0)
    assert outcome.reason == REASON_OPAQUE_MISMATCH and not outcome.ok


def test_answer_for_another_method_is_refused() -> None:
    server = make_server()
    credentials = answer(server, T0, method="INVITE")
    assert not server.verify("REGISTER", credentials, "s3cret", T0).ok


def test_verify_with_stored_ha1() -> None:
    server = make_server()
    credentials = answer(server, T0)
    ha1 = compute_ha1("1001", REALM, "s3cret", credentials.algorithm)
    assert server.verify_ha1("REGISTER", credentials, ha1, T0).ok
    assert not server.verify_ha1("REGISTER", credentials, None, T0 + 1).ok


def test_parse_credentials_names_the_missing_parameter() -> None:
    with pytest.raises(SipParseError, match="'response'"):
        parse_credentials('Digest username="a", realm="r", nonce="n", uri="sip:x"')
    with pytest.raises(SipParseError, match="'cnonce'"):
        parse_credentials(
            'Digest username="a", realm="r", nonce="n", uri="sip:x", response="0", qop=auth, nc=1'
        )
    with pytest.raises(SipParseError, match="nc"):
        parse_credentials(
            'Digest username="a", realm="r", nonce="n", uri="sip:x", response="0", qop=auth, '
            'nc=1, cnonce="c"'
        )
    with pytest.raises(SipParseError, match="not Digest"):
        parse_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    with pytest.raises(SipParseError):
        parse_credentials('Digest username="a')


def test_parse_credentials_unescapes_and_defaults_to_md5() -> None:
    credentials = parse_credentials(
        'digest  USERNAME="a\\"b" ,realm="r",nonce=abc/def=,uri="sip:x",response="00"'
    )
    assert credentials.username == 'a"b'
    assert credentials.nonce == "abc/def="
    assert credentials.algorithm == "MD5"


def test_quoted_username_round_trips_through_answer() -> None:
    server = make_server()
    credentials = answer(server, T0, username='we"ird\\name')
    assert credentials.username == 'we"ird\\name'
    assert server.verify("REGISTER", credentials, "s3cret", T0).ok


@given(
    st.one_of(
        st.text(max_size=200),
        st.text(alphabet='Digest usernamrlocp=",\\ \t', max_size=200),
    )
)
def test_parse_credentials_raises_only_parse_errors(value: str) -> None:
    try:
        credentials = parse_credentials(value)
    except SipParseError as exc:
        assert exc.status == 400
    else:
        assert isinstance(credentials, Credentials)


@given(
    username=st.text(st.characters(blacklist_characters="\r\n"), min_size=1, max_size=30),
    password=st.text(max_size=30),
)
def test_any_username_and_password_round_trip(username: str, password: str) -> None:
    server = make_server()
    credentials = answer(server, T0, username=username, password=password)
    assert credentials.username == username
    assert server.verify("REGISTER", credentials, password, T0).ok


def test_pick_challenge_prefers_sha256() -> None:
    md5 = 'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"'
    sha = 'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"'
    assert pick_challenge([md5, sha]) == sha
    assert pick_challenge([sha, md5]) == sha
    assert pick_challenge(['Digest realm="r", nonce="n"', 'Basic realm="r"']) == (
        'Digest realm="r", nonce="n"'
    )


def test_pick_challenge_skips_what_it_cannot_answer() -> None:
    auth_int = 'Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth-int"'
    unknown = 'Digest realm="r", nonce="n", algorithm=SHA3-512'
    md5 = 'Digest realm="r", nonce="n", algorithm=MD5'
    assert pick_challenge([auth_int, unknown, md5]) == md5
    with pytest.raises(DigestChallengeError):
        pick_challenge([auth_int, unknown, "garbage"])
    with pytest.raises(DigestChallengeError):
        answer_challenge(auth_int, method="INVITE", uri="u", username="a", password="p", cnonce="c")
    assert issubclass(DigestChallengeError, SipParseError)
