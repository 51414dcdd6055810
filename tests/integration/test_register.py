"""Registration of extensions: digest (MD5 with SIPp, SHA-256 with a raw client), bindings,
expiry, several contacts, un-registration, and bindings that survive a restart."""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness.ports import LOOPBACK, free_udp_tcp_port
from harness.server import RunningServer, extension_password
from harness.sipp import SippUas, place_call, register_phone, run_sipp

from callplane.core.sip.digest import answer_challenge

SHORT_EXPIRES_S = 3  # asked for in the expiry test; a registrar may grant less, never more
MAX_MIN_EXPIRES_S = 120  # a registrar's Min-Expires above this would make the test too slow
EXPIRY_GRACE_S = 10  # after the granted time, the binding must be gone within this
RAW_TIMEOUT_S = 3.0

pytestmark = pytest.mark.timeout(90)


class RawRegistrar:
    """A minimal SIP-over-UDP client for what SIPp 3.6 cannot do (SHA-256 digest, RFC 8760)."""

    def __init__(self, server_port: int, number: str) -> None:
        self.server_port = server_port
        self.number = number
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(RAW_TIMEOUT_S)
        self.port: int = self.sock.getsockname()[1]
        self.call_id = f"{secrets.token_hex(8)}@{LOOPBACK}"
        self.from_tag = secrets.token_hex(4)
        self.cseq = 0

    @property
    def request_uri(self) -> str:
        return f"sip:{LOOPBACK}:{self.server_port}"

    def register(self, expires_s: int, authorization: str | None = None) -> tuple[int, str]:
        """Send one REGISTER and return (status, raw response), skipping provisional ones."""
        self.cseq += 1
        headers = [
            f"REGISTER {self.request_uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.number}@{LOOPBACK}>;tag={self.from_tag}",
            f"To: <sip:{self.number}@{LOOPBACK}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:{self.number}@{LOOPBACK}:{self.port}>",
            f"Expires: {expires_s}",
        ]
        if authorization is not None:
            headers.append(f"Authorization: {authorization}")
        message = "\r\n".join([*headers, "Content-Length: 0", "", ""])
        self.sock.sendto(message.encode(), (LOOPBACK, self.server_port))
        while True:
            text = self.sock.recv(65_535).decode(errors="replace")
            status = int(text.split(" ", 2)[1])
            if status >= 200:
                return status, text

    def close(self) -> None:
        self.sock.close()


def _headers(response: str, name: str) -> list[str]:
    return re.findall(rf"^{name}:\s*(.*?)\r?$", response, flags=re.IGNORECASE | re.MULTILINE)


def _register_with(
    client: RawRegistrar, algorithm: str, password: str, expires_s: int, *, expect: int = 200
) -> str:
    status, challenge = client.register(expires_s)
    assert status == 401, challenge
    offers = _headers(challenge, "WWW-Authenticate")
    offer = next(
        (o for o in offers if re.search(rf"algorithm={algorithm}\b", o, re.IGNORECASE)), None
    )
    assert offer is not None, f"no {algorithm} challenge offered: {challenge}"
    answer = answer_challenge(
        offer,
        method="REGISTER",
        uri=client.request_uri,
        username=client.number,
        password=password,
        cnonce=secrets.token_hex(8),
    )
    status, response = client.register(expires_s, answer)
    if status == 423 and expect != 200:
        return response
    assert status == 200, response
    return response


def _unregistered(pbx: RunningServer, port: int) -> bool:
    return f":{port}" not in pbx.registrations()


def test_register_with_md5_digest_then_unregister(pbx: RunningServer, sipp_dir: Path) -> None:
    result = run_sipp(
        "register.xml",
        work_dir=sipp_dir,
        local_port=free_udp_tcp_port(),
        remote=pbx.target,
        service="1001",
        auth_user="1001",
        auth_password=extension_password("1001"),
        keys={"expires": "3600"},
    )

    assert result.ok, result.explain() + "\n--- server ---\n" + pbx.log_text()[-4000:]


def test_register_over_tcp(pbx: RunningServer, sipp_dir: Path) -> None:
    port = free_udp_tcp_port()
    result = register_phone(
        pbx.target,
        work_dir=sipp_dir,
        number="1001",
        password=extension_password("1001"),
        local_port=port,
        transport="tcp",
    )

    assert result.ok, result.explain()
    assert f":{port}" in pbx.registrations()


def test_register_with_sha256_digest(pbx: RunningServer) -> None:
    client = RawRegistrar(pbx.sip_port, "1002")
    try:
        response = _register_with(client, "SHA-256", extension_password("1002"), 3600)
    finally:
        client.close()

    assert any(str(client.port) in contact for contact in _headers(response, "Contact"))
    assert f":{client.port}" in pbx.registrations()


def test_wrong_password_is_refused_and_binds_nothing(pbx: RunningServer, sipp_dir: Path) -> None:
    port = free_udp_tcp_port()
    result = run_sipp(
        "register_wrong_password.xml",
        work_dir=sipp_dir,
        local_port=port,
        remote=pbx.target,
        service="1001",
        auth_user="1001",
        auth_password="not-the-password",
        keys={"expires": "3600"},
    )

    assert result.ok, result.explain()
    assert _unregistered(pbx, port)


@pytest.mark.timeout(180)
def test_binding_expires_and_extension_becomes_unreachable(
    pbx: RunningServer, sipp_dir: Path
) -> None:
    client = RawRegistrar(pbx.sip_port, "1002")
    try:
        response = _register_with(
            client, "MD5", extension_password("1002"), SHORT_EXPIRES_S, expect=423
        )
        expires_s = SHORT_EXPIRES_S
        if response.startswith("SIP/2.0 423"):  # RFC 3261 §10.3 step 7: retry at Min-Expires
            (minimum,) = _headers(response, "Min-Expires")
            expires_s = int(minimum)
            assert expires_s <= MAX_MIN_EXPIRES_S, response
            response = _register_with(client, "MD5", extension_password("1002"), expires_s)
    finally:
        client.close()
    granted = re.search(r"expires=(\d+)", " ".join(_headers(response, "(?:Contact|m)")))
    assert granted is not None and int(granted.group(1)) <= expires_s, response
    assert f":{client.port}" in pbx.registrations()

    deadline = time.monotonic() + int(granted.group(1)) + EXPIRY_GRACE_S
    while not _unregistered(pbx, client.port) and time.monotonic() < deadline:
        time.sleep(0.5)

    assert _unregistered(pbx, client.port)
    caller = place_call(
        "uac_expect_480_or_408.xml",
        pbx.target,
        work_dir=sipp_dir,
        caller="1001",
        password=extension_password("1001"),
        callee="1002",
    )
    assert caller.ok, caller.explain()


def test_several_contacts_are_bound_and_listed(pbx: RunningServer, sipp_dir: Path) -> None:
    ports = [free_udp_tcp_port(), free_udp_tcp_port()]
    results = [
        register_phone(
            pbx.target,
            work_dir=sipp_dir,
            number="1002",
            password=extension_password("1002"),
            local_port=port,
        )
        for port in ports
    ]

    for result in results:
        assert result.ok, result.explain()
    # RFC 3261 §10.3 step 8: the 200 OK lists every current binding of the AOR.
    last_ok = results[-1].messages.rsplit("SIP/2.0 200", 1)[1]
    contacts = " ".join(_headers("SIP/2.0 200" + last_ok, "(?:Contact|m)"))
    assert all(f":{port}" in contacts for port in ports), contacts
    listed = pbx.registrations()
    assert all(f":{port}" in listed for port in ports), listed


def test_unregister_removes_binding_and_calls_get_480(pbx: RunningServer, sipp_dir: Path) -> None:
    port = free_udp_tcp_port()
    password = extension_password("1002")
    registered = register_phone(
        pbx.target, work_dir=sipp_dir, number="1002", password=password, local_port=port
    )
    assert registered.ok, registered.explain()

    removed = run_sipp(
        "unregister.xml",
        work_dir=sipp_dir,
        local_port=port,
        remote=pbx.target,
        service="1002",
        auth_user="1002",
        auth_password=password,
    )

    assert removed.ok, removed.explain()
    assert _unregistered(pbx, port)
    caller = place_call(
        "uac_expect_480_or_408.xml",
        pbx.target,
        work_dir=sipp_dir,
        caller="1001",
        password=extension_password("1001"),
        callee="1002",
    )
    assert caller.ok, caller.explain()


def test_registrations_survive_restart_and_phone_still_rings(
    pbx: RunningServer, sipp_dir: Path, uas_factory: Callable[..., SippUas]
) -> None:
    port = free_udp_tcp_port()
    registered = register_phone(
        pbx.target,
        work_dir=sipp_dir,
        number="1002",
        password=extension_password("1002"),
        local_port=port,
    )
    assert registered.ok, registered.explain()

    pbx.restart()

    assert f":{port}" in pbx.registrations()
    callee = uas_factory("uas_answer.xml", local_port=port, service="1002")
    caller = place_call(
        "uac_call.xml",
        pbx.target,
        work_dir=sipp_dir,
        caller="1001",
        password=extension_password("1001"),
        callee="1002",
        pause_ms=500,
    )
    assert caller.ok, caller.explain()
    result = callee.wait()
    assert result.ok, result.explain()
