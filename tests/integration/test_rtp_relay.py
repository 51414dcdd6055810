"""The RTP relay over real UDP sockets on loopback: forwarding, latching and what it drops.

The two phones are plain sockets of the test sending RTP packets built by hand; no peer program
is needed to show that a packet in on one leg comes out of the other untouched.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from callplane.pbx.rtp_relay import PortAllocator, RtpBridge

PCMU = 0
TELEPHONE_EVENT = 101
HOST = "127.0.0.1"


def rtp(payload_type: int, seq: int, payload: bytes = b"\xff" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, payload_type, seq, seq * 160, 0x1234) + payload


def phone() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


async def receive(sock: socket.socket, timeout_s: float = 2.0) -> bytes | None:
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.sock_recv(sock, 2048), timeout_s)
    except TimeoutError:
        return None


async def call(bridge: RtpBridge, caller: socket.socket, callee: socket.socket) -> None:
    """Both phones' SDP addresses known, as after offer/answer."""
    bridge.a.expect(*caller.getsockname())
    bridge.b.expect(*callee.getsockname())


def test_packets_cross_the_bridge_untouched_both_ways() -> None:
    async def scenario() -> None:
        bridge = await PortAllocator(HOST).bridge([PCMU, TELEPHONE_EVENT])
        caller, callee = phone(), phone()
        try:
            await call(bridge, caller, callee)
            sent = rtp(PCMU, 1, bytes(range(160)))
            caller.sendto(sent, (HOST, bridge.a_port))
            assert await receive(callee) == sent
            back = rtp(TELEPHONE_EVENT, 7, b"\x05\x0a\x00\xa0")
            callee.sendto(back, (HOST, bridge.b_port))
            assert await receive(caller) == back
            assert bridge.a.counters.forwarded == bridge.b.counters.forwarded == 1
        finally:
            bridge.close()
            caller.close()
            callee.close()

    asyncio.run(scenario())


def test_port_latches_onto_the_first_source_and_ignores_others() -> None:
    async def scenario() -> None:
        bridge = await PortAllocator(HOST).bridge([PCMU])
        caller, callee, intruder = phone(), phone(), phone()
        try:
            await call(bridge, caller, callee)
            nat = phone()  # the caller behind NAT: its packets come from another port
            nat.sendto(rtp(PCMU, 1), (HOST, bridge.a_port))
            assert await receive(callee) is not None
            intruder.sendto(rtp(PCMU, 2), (HOST, bridge.a_port))
            assert await receive(callee, timeout_s=0.3) is None
            # Callee's audio goes back to where the caller really sends from.
            callee.sendto(rtp(PCMU, 3), (HOST, bridge.b_port))
            assert await receive(nat) is not None
            assert bridge.a.counters.wrong_source == 1
            nat.close()
        finally:
            bridge.close()
            for sock in (caller, callee, intruder):
                sock.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("packet", "counter"),
    [
        (rtp(8, 1), "wrong_payload_type"),  # PCMA was not negotiated
        (b"\x00" * 40, "not_rtp"),  # version 0
        (b"\x80\x00", "not_rtp"),  # truncated header
    ],
)
def test_bad_packets_are_dropped_and_counted(packet: bytes, counter: str) -> None:
    async def scenario() -> None:
        bridge = await PortAllocator(HOST).bridge([PCMU])
        caller, callee = phone(), phone()
        try:
            await call(bridge, caller, callee)
            caller.sendto(packet, (HOST, bridge.a_port))
            assert await receive(callee, timeout_s=0.3) is None
            assert getattr(bridge.a.counters, counter) == 1
            good = rtp(PCMU, 2)
            caller.sendto(good, (HOST, bridge.a_port))
            assert await receive(callee) == good  # the port still works afterwards
        finally:
            bridge.close()
            caller.close()
            callee.close()

    asyncio.run(scenario())


def test_allocator_skips_ports_in_use_and_hands_out_even_ports() -> None:
    async def scenario() -> None:
        busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        busy.bind((HOST, 0))
        taken = busy.getsockname()[1] & ~1
        busy.close()
        blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        blocker.bind((HOST, taken))
        allocator = PortAllocator(HOST, (taken, taken + 8))
        bridge = await allocator.bridge([PCMU])
        try:
            assert taken not in (bridge.a_port, bridge.b_port)
            assert bridge.a_port % 2 == 0 and bridge.b_port % 2 == 0
        finally:
            bridge.close()
            blocker.close()

    asyncio.run(scenario())
