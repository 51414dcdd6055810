"""Bad input and attackers (issue 3): the server refuses what it must and keeps serving everyone.

Each test starts its own server on 127.0.0.1 and speaks raw SIP with `sipclient.SipClient`
(SIPp cannot send malformed messages on purpose); SIPp phones play the legitimate users.
"""

from __future__ import annotations

import random
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness.ports import free_udp_tcp_port
from harness.server import (
    PROVIDER_DID,
    RunningServer,
    default_config,
    extension_password,
    sip_options,
)
from harness.sipp import SippUas, place_call, register_phone
from sipclient import (
    Dialogue,
    Reply,
    SipClient,
    auth_params,
    digest_authorization,
    md5_challenge,
)

ATTACKER_HOST = "127.0.0.2"  # another loopback address: a source distinct from the phones
OVERSIZE_BYTES = 70_000  # beyond MAX_MESSAGE_BYTES (65,535): 513 or a closed connection
UDP_LARGE_BYTES = 64 * 1024 - 600  # as large as one datagram gets, headers included
FLOOD_REQUESTS = 200  # sent within about a second, far above the limit below
FLOOD_MAX_REQUESTS = 16  # the default: about 16 requests in 2 s, as Kamailio's pike
NONCE_TTL_S = 1  # short, so a test can outlive a nonce
SILENCE_S = 1.0  # loopback answers in milliseconds; nothing after this is silence
VOLATILE_AUTH_PARAMS = frozenset({"nonce", "opaque"})  # per-challenge values, not user-specific


@pytest.fixture
def server(need_sipp: None, start_pbx: Callable[..., RunningServer]) -> RunningServer:
    return start_pbx(default_config())


def _alive(server: RunningServer) -> None:
    assert server.running, server.log_text()[-3000:]
    assert sip_options(server.sip_port) == 200


def _challenge_header(reply: Reply) -> tuple[str, str]:
    """The challenge header name and the answering header's name (401 or 407, RFC 3261 §22)."""
    if reply.status == 407:
        return "Proxy-Authenticate", "Proxy-Authorization"
    return "WWW-Authenticate", "Authorization"


def _ack(client: SipClient, reply: Reply, uri: str) -> None:
    """ACK a non-2xx final answer to an INVITE (RFC 3261 §17.1.1.3), so it is not resent."""
    cseq = (reply.header("CSeq") or "0 INVITE").split()[0]
    lines = [
        f"ACK {uri} SIP/2.0",
        f"Via: {reply.header('Via')}",
        "Max-Forwards: 70",
        f"From: {reply.header('From')}",
        f"To: {reply.header('To')}",
        f"Call-ID: {reply.header('Call-ID')}",
        f"CSeq: {cseq} ACK",
        "Content-Length: 0",
    ]
    client.send(("\r\n".join(lines) + "\r\n\r\n").encode())


SDP = (
    b"v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def _invite(
    client: SipClient, dialled: str, *, user: str, password: str | None, body: bytes = SDP
) -> Reply | None:
    """INVITE `dialled` as `user`, answering one digest challenge when a password is given."""
    host, port = client.server
    uri = f"sip:{dialled}@{host}:{port}"
    dialogue = Dialogue()
    common: dict[str, Any] = {
        "uri": uri,
        "user": user,
        "to_user": dialled,
        "dialogue": dialogue,
        "headers": [("Content-Type", "application/sdp")],
        "body": body,
    }
    reply = client.request("INVITE", **common)
    if reply is None or reply.status not in (401, 407) or password is None:
        return reply
    _ack(client, reply, uri)
    challenge_name, answer_name = _challenge_header(reply)
    challenges = reply.header_all(challenge_name)
    md5 = next(c for c in challenges if auth_params(c).get("algorithm", "MD5").upper() == "MD5")
    authorization = digest_authorization(
        md5, method="INVITE", uri=uri, username=user, password=password
    )
    common["headers"] = [*common["headers"], (answer_name, authorization)]
    final = client.request("INVITE", **common)
    if final is not None and final.status >= 300:
        _ack(client, final, uri)
    return final


# -- malformed and oversize input ---------------------------------------------------------------


def test_random_bytes_get_no_answer_and_the_server_keeps_serving(server: RunningServer) -> None:
    rng = random.Random(4475)
    with SipClient(server.sip_port) as client:
        for size in (1, 17, 512, 1400, 8000):
            client.send(bytes(rng.getrandbits(8) for _ in range(size)))
        assert client.drain(SILENCE_S) == []
    _alive(server)


def test_oversize_message_over_tcp_is_refused_with_513_or_closed(server: RunningServer) -> None:
    with SipClient(server.sip_port, transport="tcp") as client:
        padding = [("X-Padding", "a" * OVERSIZE_BYTES)]
        try:
            client.send(client.build("OPTIONS", headers=padding))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection while we were still sending
        else:
            data = client.recv_raw(5.0)
            if data:
                assert data.startswith(b"SIP/2.0 513 "), data[:200]
            else:
                assert data == b"", "neither 513 nor a closed connection"
    _alive(server)


def test_largest_udp_datagram_does_not_disturb_the_server(server: RunningServer) -> None:
    with SipClient(server.sip_port) as client:
        padding = [("X-Padding", "b" * UDP_LARGE_BYTES)]
        client.send(client.build("OPTIONS", headers=padding))
        reply = client.final(SILENCE_S)
        assert reply is None or reply.status in (200, 400, 513), reply
    _alive(server)


def test_content_length_beyond_the_body_over_udp_is_a_400(server: RunningServer) -> None:
    with SipClient(server.sip_port) as client:
        reply = client.request("OPTIONS", body=b"v=0\r\n", content_length=500)
    assert reply is not None and reply.status == 400
    assert "Content-Length" in reply.reason


def test_partial_message_over_tcp_does_not_block_others(server: RunningServer) -> None:
    with SipClient(server.sip_port, transport="tcp") as slow:
        slow.send(slow.build("OPTIONS", body=b"v=0\r\n", content_length=500))
        with SipClient(server.sip_port, transport="tcp") as other:
            reply = other.request("OPTIONS")
            assert reply is not None and reply.status == 200
        _alive(server)
        assert slow.recv_raw(0.5) is None, "the server answered a message it has not received"


def test_unknown_method_is_501_with_allow(server: RunningServer) -> None:
    with SipClient(server.sip_port) as client:
        reply = client.request("FOO")
    assert reply is not None and reply.status == 501
    allow = reply.header("Allow")
    assert allow is not None and "INVITE" in allow and "FOO" not in allow


# -- callers who are not who they say -----------------------------------------------------------


def _answering_phone(
    server: RunningServer, sipp_dir: Path, uas_factory: Callable[..., SippUas], number: str
) -> SippUas:
    """A SIPp phone registered as `number` that would answer any call it gets."""
    port = free_udp_tcp_port()
    registered = register_phone(
        server.target,
        work_dir=sipp_dir,
        number=number,
        password=extension_password(number),
        local_port=port,
    )
    assert registered.ok, registered.explain()
    return uas_factory("uas_answer.xml", local_port=port, service=number, timeout_s=10)


def test_did_call_from_an_unknown_source_is_refused_and_never_routed(
    server: RunningServer, sipp_dir: Path, uas_factory: Callable[..., SippUas]
) -> None:
    phone = _answering_phone(server, sipp_dir, uas_factory, "1001")
    with SipClient(server.sip_port) as intruder:
        reply = _invite(intruder, PROVIDER_DID, user="+33999999999", password=None)
    assert reply is not None and reply.status in (401, 403, 407), reply
    time.sleep(SILENCE_S)
    phone.stop()
    result = phone.wait(timeout_s=5)
    assert "INVITE sip:" not in result.messages, "the DID call reached the extension"


def test_offer_with_no_codec_callplane_carries_gets_488_and_never_rings(
    server: RunningServer, sipp_dir: Path, uas_factory: Callable[..., SippUas]
) -> None:
    phone = _answering_phone(server, sipp_dir, uas_factory, "1002")
    g729_only = SDP.replace(
        b"RTP/AVP 0\r\na=rtpmap:0 PCMU/8000", b"RTP/AVP 18\r\na=rtpmap:18 G729/8000"
    )
    with SipClient(server.sip_port) as caller:
        reply = _invite(
            caller, "1002", user="1001", password=extension_password("1001"), body=g729_only
        )
    assert reply is not None and reply.status == 488, reply
    time.sleep(SILENCE_S)
    phone.stop()
    result = phone.wait(timeout_s=5)
    assert "INVITE sip:" not in result.messages, "the callee's phone rang"


# -- digest hardening ---------------------------------------------------------------------------


def _register_with(client: SipClient, user: str, password: str) -> tuple[Reply, Reply]:
    challenge, final = client.register(user, password)
    assert challenge is not None and challenge.status == 401, challenge
    assert final is not None, "no answer to the authenticated REGISTER"
    return challenge, final


def _shape(reply: Reply) -> tuple[int, str, list[str], list[dict[str, str]]]:
    """What a scanner could compare: status, reason, header order, challenge parameters."""
    challenges = [
        {k: v for k, v in auth_params(value).items() if k not in VOLATILE_AUTH_PARAMS}
        for value in reply.header_all("WWW-Authenticate")
    ]
    return reply.status, reply.reason, reply.header_names(), challenges


def test_unknown_user_and_wrong_password_get_the_same_answer(server: RunningServer) -> None:
    with SipClient(server.sip_port) as client:
        unknown = _register_with(client, "1999", "guess")
    with SipClient(server.sip_port) as client:
        wrong = _register_with(client, "1001", "guess")
    for unknown_reply, wrong_reply in zip(unknown, wrong, strict=True):
        assert _shape(unknown_reply) == _shape(wrong_reply)
    assert wrong[1].status in (401, 403)


def test_expired_nonce_is_rechallenged_with_stale_true(
    need_sipp: None, start_pbx: Callable[..., RunningServer]
) -> None:
    server = start_pbx(default_config(), nonce_ttl_s=NONCE_TTL_S)
    uri = f"sip:{server.host}:{server.sip_port}"
    with SipClient(server.sip_port) as client:
        dialogue = Dialogue()
        challenge = client.request("REGISTER", uri=uri, user="1001", dialogue=dialogue)
        assert challenge is not None and challenge.status == 401
        time.sleep(NONCE_TTL_S * 2.5)
        authorization = digest_authorization(
            md5_challenge(challenge),
            method="REGISTER",
            uri=uri,
            username="1001",
            password=extension_password("1001"),
        )
        reply = client.request(
            "REGISTER",
            uri=uri,
            user="1001",
            dialogue=dialogue,
            headers=[("Authorization", authorization)],
        )
    assert reply is not None and reply.status == 401, reply
    stale = [auth_params(v).get("stale", "").lower() for v in reply.header_all("WWW-Authenticate")]
    assert "true" in stale, reply.raw
    assert not re.search(r'auth failure from \S+ user "1001"', server.log_text()), (
        "a stale nonce with the right password is not a failed attempt"
    )


def test_nonce_count_replay_is_rejected(server: RunningServer) -> None:
    uri = f"sip:{server.host}:{server.sip_port}"
    with SipClient(server.sip_port) as client:
        dialogue = Dialogue()
        challenge = client.request("REGISTER", uri=uri, user="1001", dialogue=dialogue)
        assert challenge is not None and challenge.status == 401
        authorization = digest_authorization(
            md5_challenge(challenge),
            method="REGISTER",
            uri=uri,
            username="1001",
            password=extension_password("1001"),
            nc=1,
            cnonce="0a4f113b",
        )
        headers = [("Authorization", authorization)]
        first = client.request("REGISTER", uri=uri, user="1001", dialogue=dialogue, headers=headers)
        assert first is not None and first.status == 200, first
        replay = client.request(
            "REGISTER", uri=uri, user="1001", dialogue=dialogue, headers=headers
        )
    assert replay is not None and replay.status in (401, 403), replay


def test_failed_attempts_are_logged_for_fail2ban(server: RunningServer) -> None:
    with SipClient(server.sip_port) as client:
        _register_with(client, "1001", "not-the-password")
    time.sleep(0.2)
    assert re.search(r'auth failure from 127\.0\.0\.1 user "1001"', server.log_text())


# -- flood control ------------------------------------------------------------------------------


def _options_flood(port: int, bind_host: str, count: int) -> SipClient:
    client = SipClient(port, bind_host=bind_host)
    for _ in range(count):
        client.send(client.build("OPTIONS"))
    client.drain(0.5)
    return client


def test_flooding_source_is_ignored_while_other_callers_keep_calling(
    need_sipp: None,
    start_pbx: Callable[..., RunningServer],
    sipp_dir: Path,
    uas_factory: Callable[..., SippUas],
) -> None:
    server = start_pbx(
        default_config(), flood_max_requests=FLOOD_MAX_REQUESTS, flood_window_s=2, flood_block_s=60
    )
    attacker = _options_flood(server.sip_port, ATTACKER_HOST, FLOOD_REQUESTS)
    with attacker:
        assert attacker.request("OPTIONS", timeout_s=SILENCE_S) is None, "flooder still answered"
        port = free_udp_tcp_port()
        registered = register_phone(
            server.target,
            work_dir=sipp_dir,
            number="1002",
            password=extension_password("1002"),
            local_port=port,
        )
        assert registered.ok, registered.explain()
        callee = uas_factory("uas_answer.xml", local_port=port, service="1002")
        call = place_call(
            "uac_call.xml",
            server.target,
            work_dir=sipp_dir,
            caller="1001",
            password=extension_password("1001"),
            callee="1002",
            pause_ms=200,
        )
        assert call.ok, call.explain()
        assert callee.wait().ok
        assert attacker.request("OPTIONS", timeout_s=SILENCE_S) is None


def test_trusted_trunk_address_is_exempt_from_flood_control(
    need_sipp: None, start_pbx: Callable[..., RunningServer]
) -> None:
    server = start_pbx(
        default_config(), flood_max_requests=FLOOD_MAX_REQUESTS, flood_window_s=2, flood_block_s=60
    )
    with _options_flood(server.sip_port, "127.0.0.1", FLOOD_REQUESTS) as trunk_host:
        reply = trunk_host.request("OPTIONS")
    assert reply is not None and reply.status == 200


# -- dial strings -------------------------------------------------------------------------------


@pytest.mark.parametrize("dialled", ["1001;evil", "00442071234567"])
def test_forbidden_dial_string_is_refused_and_never_sent_to_the_trunk(
    need_sipp: None, start_pbx: Callable[..., RunningServer], dialled: str
) -> None:
    provider_port = free_udp_tcp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as provider:
        provider.bind(("127.0.0.1", provider_port))
        server = start_pbx(default_config(provider_port=provider_port))
        with SipClient(server.sip_port) as phone:
            reply = _invite(phone, dialled, user="1002", password=extension_password("1002"))
        assert reply is not None and reply.status in (403, 404, 484), reply
        provider.settimeout(SILENCE_S)
        with pytest.raises(TimeoutError):
            data = provider.recv(65_535)
            pytest.fail(f"the trunk received: {data[:200]!r}")
