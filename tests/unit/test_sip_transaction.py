"""SIP transactions (RFC 3261 §17): both roles over a fake link that drops, duplicates, reorders."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callplane.core.sip.address import Address
from callplane.core.sip.dialog import cancel_for, new_branch
from callplane.core.sip.errors import LocalProtocolError
from callplane.core.sip.message import Request, Response, make_response, parse
from callplane.core.sip.transaction import (
    T1_S,
    TRANSITIONS,
    Action,
    CancelTimer,
    RequestReceived,
    ResponseReceived,
    Send,
    StartTimer,
    StrayResponse,
    TimerKey,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TxKey,
    TxKind,
    TxState,
)

A = TypeVar("A")
ALICE = Address("UDP", "10.0.0.1", 5060)
BOB = Address("UDP", "10.0.0.2", 5060)


def request(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bKaaa1",
    via: str | None = None,
    seq: int = 1,
    transport: str = "UDP",
    to_tag: str = "",
) -> Request:
    via = via or f"SIP/2.0/{transport} 10.0.0.1:5060;branch={branch}"
    to = "<sip:bob@10.0.0.2>" + (f";tag={to_tag}" if to_tag else "")
    return parse_request(
        f"{method} sip:bob@10.0.0.2 SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@10.0.0.1>;tag=a1\r\n"
        f"To: {to}\r\n"
        "Call-ID: call-1@10.0.0.1\r\n"
        f"CSeq: {seq} {method}\r\n"
        "Contact: <sip:alice@10.0.0.1:5060>\r\n"
        "Content-Length: 0\r\n\r\n"
    )


def parse_request(text: str) -> Request:
    message = parse(text.encode())
    assert isinstance(message, Request)
    return message


def answer(req: Request, status: int) -> Response:
    return make_response(req, status, to_tag=None if status == 100 else "b1")


# --- a fake link with a fake clock -----------------------------------------------------------


class Endpoint:
    """One SIP endpoint: a transaction layer, its timers, and what its TU was told."""

    def __init__(self, net: Net, addr: Address) -> None:
        self.net = net
        self.addr = addr
        self.layer = TransactionLayer()
        self.timers: dict[TimerKey, float] = {}
        self.events: list[Action] = []
        self.sent: list[bytes] = []
        self.on_event: Callable[[Endpoint, Action], None] | None = None

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                data = bytes(action.message)
                self.sent.append(data)
                self.net.send(self.addr, action.dest, data)
            elif isinstance(action, StartTimer):
                self.timers[action.key] = action.at
            elif isinstance(action, CancelTimer):
                self.timers.pop(action.key, None)
            else:
                self.events.append(action)
                if self.on_event is not None:
                    self.on_event(self, action)

    def send_request(self, req: Request, dest: Address) -> TxKey:
        key, actions = self.layer.send_request(req, dest, self.net.now)
        self.apply(actions)
        return key

    def respond(self, tx: TxKey, response: Response) -> None:
        self.apply(self.layer.send_response(tx, response, self.net.now))

    def told(self, kind: type[A]) -> list[A]:
        return [e for e in self.events if isinstance(e, kind)]

    def sent_count(self, start: bytes) -> int:
        return sum(1 for data in self.sent if data.startswith(start))


class Net:
    """Delivers datagrams after a small delay; `fault` decides per datagram what happens to it."""

    LATENCY_S = 0.01
    LATE_S = 0.7

    def __init__(self) -> None:
        self.now = 0.0
        self.endpoints: dict[tuple[str, int], Endpoint] = {}
        self.in_flight: list[tuple[float, int, Address, Address, bytes]] = []
        self.seq = 0
        self.fault: Callable[[bytes], str] = lambda data: "deliver"

    def endpoint(self, addr: Address) -> Endpoint:
        ep = Endpoint(self, addr)
        self.endpoints[(addr.host, addr.port)] = ep
        return ep

    def send(self, src: Address, dest: Address, data: bytes) -> None:
        fate = self.fault(data)
        delays = {
            "drop": [],
            "deliver": [self.LATENCY_S],
            "duplicate": [self.LATENCY_S, 2 * self.LATENCY_S],
            "late": [self.LATE_S],  # overtaken by whatever is sent next: reordered
        }[fate]
        for delay in delays:
            self.seq += 1
            self.in_flight.append((self.now + delay, self.seq, src, dest, data))

    def step(self, until: float) -> bool:
        """Run the earliest packet or timer due by `until`; False when nothing is due."""
        packet = min(self.in_flight) if self.in_flight else None
        timers = [(at, key, ep) for ep in self.endpoints.values() for key, at in ep.timers.items()]
        timer = min(timers, key=lambda t: t[0]) if timers else None
        if packet is not None and (timer is None or packet[0] <= timer[0]):
            if packet[0] > until:
                return False
            self.now = max(self.now, packet[0])
            self.in_flight.remove(packet)
            _, _, src, dest, data = packet
            ep = self.endpoints[(dest.host, dest.port)]
            source = Address(dest.transport, src.host, src.port)
            ep.apply(ep.layer.receive(parse(data), source, self.now))
            return True
        if timer is None or timer[0] > until:
            return False
        at, key, ep = timer
        self.now = max(self.now, at)
        del ep.timers[key]
        ep.apply(ep.layer.timer_fired(key, self.now))
        return True

    def run(self, until: float = 10_000.0) -> None:
        while self.step(until):
            pass


def uas_answers(*statuses: int) -> Callable[[Endpoint, Action], None]:
    """A UAS TU answering each new INVITE with `statuses` in turn, other requests with 200."""

    def tu(ep: Endpoint, event: Action) -> None:
        if isinstance(event, RequestReceived) and event.tx is not None:
            if event.request.method == "INVITE":
                for status in statuses:
                    ep.respond(event.tx, answer(event.request, status))
            else:
                ep.respond(event.tx, answer(event.request, 200))

    return tu


def uac_acks_2xx(ep: Endpoint, event: Action) -> None:
    """A UAC TU that ACKs every 2xx to INVITE, retransmissions included (RFC 3261 §13.2.2.4)."""
    if (
        isinstance(event, ResponseReceived | StrayResponse)
        and 200 <= event.response.status < 300
        and event.response.cseq.method == "INVITE"
    ):
        ack = request("ACK", branch=new_branch(), to_tag=event.response.to.tag or "")
        ep.apply(ep.layer.send_ack(ack, BOB))


@pytest.fixture
def net() -> Net:
    return Net()


def statuses(ep: Endpoint) -> list[int]:
    return [e.response.status for e in ep.told(ResponseReceived)]


# --- end-to-end flows ------------------------------------------------------------------------


def test_call_is_answered_acked_and_every_transaction_ends(net: Net) -> None:
    alice, bob = net.endpoint(ALICE), net.endpoint(BOB)
    bob.on_event = uas_answers(100, 180, 200)
    alice.on_event = uac_acks_2xx
    alice.send_request(request(), BOB)
    net.run()
    assert statuses(alice) == [100, 180, 200]
    methods = [e.request.method for e in bob.told(RequestReceived)]
    assert methods == ["INVITE", "ACK"]
    assert len(alice.layer) == 0 and len(bob.layer) == 0
    assert alice.timers == {} and bob.timers == {}


def test_dropped_invite_is_recovered_by_retransmission(net: Net) -> None:
    alice, bob = net.endpoint(ALICE), net.endpoint(BOB)
    bob.on_event = uas_answers(100, 200)
    alice.on_event = uac_acks_2xx
    dropped: list[bytes] = []

    def drop_first_invite(data: bytes) -> str:
        if data.startswith(b"INVITE") and not dropped:
            dropped.append(data)
            return "drop"
        return "deliver"

    net.fault = drop_first_invite
    alice.send_request(request(), BOB)
    net.run()
    assert dropped and 200 in statuses(alice)
    assert alice.sent_count(b"INVITE") == 2
    assert len(bob.told(RequestReceived)) == 2  # the INVITE once, then the ACK


def test_dropped_200_is_resent_until_acked_and_each_copy_is_reacked(net: Net) -> None:
    alice, bob = net.endpoint(ALICE), net.endpoint(BOB)
    bob.on_event = uas_answers(100, 200)
    alice.on_event = uac_acks_2xx
    oks = 0

    def drop_first_two_oks(data: bytes) -> str:
        nonlocal oks
        if data.startswith(b"SIP/2.0 200"):
            oks += 1
            return "drop" if oks <= 2 else "duplicate"
        return "deliver"

    net.fault = drop_first_two_oks
    alice.send_request(request(), BOB)
    net.run()
    assert bob.sent_count(b"SIP/2.0 200") == 3  # the layer retransmitted the 2xx itself
    assert statuses(alice).count(200) == 2  # the duplicate came up too ...
    assert alice.sent_count(b"ACK") == 2  # ... and was ACKed again
    assert not bob.told(TransactionTimedOut)  # the ACK stopped the 2xx retransmissions
    assert len(alice.layer) == 0 and len(bob.layer) == 0


def test_dropped_bye_is_recovered_and_duplicate_is_absorbed(net: Net) -> None:
    alice, bob = net.endpoint(ALICE), net.endpoint(BOB)
    bob.on_event = uas_answers()
    byes = 0

    def drop_first_bye_duplicate_second(data: bytes) -> str:
        nonlocal byes
        if data.startswith(b"BYE"):
            byes += 1
            return "drop" if byes == 1 else "duplicate"
        return "deliver"

    net.fault = drop_first_bye_duplicate_second
    alice.send_request(request("BYE", seq=2, to_tag="b1"), BOB)
    net.run()
    assert statuses(alice) == [200]
    assert len(bob.told(RequestReceived)) == 1
    assert bob.sent_count(b"SIP/2.0 200") == 2  # the retransmitted BYE got the 200 again
    assert len(alice.layer) == 0 and len(bob.layer) == 0


def test_silence_times_out_invite_with_timer_b(net: Net) -> None:
    alice = net.endpoint(ALICE)
    net.endpoint(BOB)
    net.fault = lambda data: "drop"
    key = alice.send_request(request(), BOB)
    net.run()
    assert alice.told(TransactionTimedOut) == [TransactionTimedOut(key, 408)]
    assert alice.told(TransactionTerminated) == [TransactionTerminated(key)]
    assert alice.sent_count(b"INVITE") == 7  # RFC 3261 §17.1.1.2: A doubles until B at 64*T1


def test_silence_times_out_non_invite_with_timer_f_capped_at_t2(net: Net) -> None:
    alice = net.endpoint(ALICE)
    net.endpoint(BOB)
    net.fault = lambda data: "drop"
    key = alice.send_request(request("OPTIONS"), BOB)
    net.run()
    assert alice.told(TransactionTimedOut) == [TransactionTimedOut(key, 408)]
    # 0, .5, 1.5, 3.5, 7.5, then every 4 s (T2) until 32 s
    assert alice.sent_count(b"OPTIONS") == 11


def test_cancel_gets_200_and_invite_gets_487_which_is_acked(net: Net) -> None:
    alice, bob = net.endpoint(ALICE), net.endpoint(BOB)
    invite_tx: list[TxKey] = []
    bob_invite: list[Request] = []

    def bob_tu(ep: Endpoint, event: Action) -> None:
        if not isinstance(event, RequestReceived) or event.tx is None:
            return
        if event.request.method == "INVITE":
            invite_tx.append(event.tx)
            bob_invite.append(event.request)
            ep.respond(event.tx, answer(event.request, 180))
        elif event.request.method == "CANCEL":
            target = ep.layer.invite_for_cancel(event.tx)
            assert target == invite_tx[0]
            ep.respond(event.tx, make_response(event.request, 200))
            ep.respond(target, answer(bob_invite[0], 487))

    bob.on_event = bob_tu
    invite = request()
    alice.send_request(invite, BOB)
    net.run(until=1.0)
    assert statuses(alice) == [180]
    alice.send_request(cancel_for(invite), BOB)
    net.run()
    assert sorted(statuses(alice)) == [180, 200, 487]
    assert alice.sent_count(b"ACK") == 1  # the layer ACKed the 487 itself (§17.1.1.3)
    assert bob.told(RequestReceived)[-1].request.method == "CANCEL"
    assert not bob.told(TransactionTimedOut)  # the ACK reached the INVITE server transaction
    assert len(alice.layer) == 0 and len(bob.layer) == 0


def test_unacked_2xx_is_retransmitted_then_reported_so_the_tu_can_hang_up(net: Net) -> None:
    alice, bob = net.endpoint(ALICE), net.endpoint(BOB)
    bob.on_event = uas_answers(200)  # alice's TU never ACKs
    alice.send_request(request(), BOB)
    net.run()
    assert bob.sent_count(b"SIP/2.0 200") == 11  # T1 doubling, capped at T2, until 64*T1
    (timed_out,) = bob.told(TransactionTimedOut)
    assert timed_out.status == 408
    assert statuses(alice).count(200) == 11  # every copy reached alice's TU
    assert len(bob.layer) == 0


def test_invite_ringing_forever_times_out_with_timer_c(net: Net) -> None:
    alice, bob = net.endpoint(ALICE), net.endpoint(BOB)
    bob.on_event = uas_answers(180)
    key = alice.send_request(request(), BOB)
    net.run()
    assert statuses(alice) == [180]
    assert alice.told(TransactionTimedOut) == [TransactionTimedOut(key, 408)]
    assert len(alice.layer) == 0


def test_transport_failure_reports_503_and_ends_the_transaction() -> None:
    layer = TransactionLayer()
    key, _ = layer.send_request(request("OPTIONS"), BOB, 0.0)
    actions = layer.transport_failed(key, 0.1)
    assert actions[0] == TransactionTimedOut(key, 503)
    assert actions[-1] == TransactionTerminated(key)
    assert {a.key.name for a in actions if isinstance(a, CancelTimer)} == {"E", "F"}
    assert len(layer) == 0
    assert layer.transport_failed(key, 0.2) == []


# --- UDP and TCP ------------------------------------------------------------------------------


def timer_names(actions: list[Action]) -> set[str]:
    return {a.key.name for a in actions if isinstance(a, StartTimer)}


def test_udp_runs_retransmit_timers_and_tcp_does_not() -> None:
    layer = TransactionLayer()
    _, udp = layer.send_request(request(branch="z9hG4bKu1"), BOB, 0.0)
    _, tcp = layer.send_request(
        request(branch="z9hG4bKt1", transport="TCP"), Address("TCP", "10.0.0.2", 5060), 0.0
    )
    assert timer_names(udp) == {"A", "B"}
    assert timer_names(tcp) == {"B"}
    _, udp = layer.send_request(request("OPTIONS", branch="z9hG4bKu2"), BOB, 0.0)
    _, tcp = layer.send_request(
        request("OPTIONS", branch="z9hG4bKt2", transport="TCP"),
        Address("TCP", "10.0.0.2", 5060),
        0.0,
    )
    assert timer_names(udp) == {"E", "F"}
    assert timer_names(tcp) == {"F"}


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_completed_transactions_linger_on_udp_and_end_at_once_on_tcp(transport: str) -> None:
    source = Address(transport, "10.0.0.1", 5060)
    reliable = transport == "TCP"
    server = TransactionLayer()
    options = request("OPTIONS", transport=transport)
    (received,) = server.receive(options, source, 0.0)
    assert isinstance(received, RequestReceived) and received.tx is not None
    actions = server.send_response(received.tx, answer(options, 200), 0.0)
    assert (len(server) == 0) is reliable  # Timer J is zero on TCP
    assert any(isinstance(a, TransactionTerminated) for a in actions) is reliable

    client = TransactionLayer()
    dest = Address(transport, "10.0.0.2", 5060)
    invite = request(transport=transport)
    key, _ = client.send_request(invite, dest, 0.0)
    actions = client.receive(answer(invite, 486), dest, 0.1)
    assert any(isinstance(a, Send) and a.message.method == "ACK" for a in actions)  # type: ignore[union-attr]
    assert (client.state(key) is TxState.TERMINATED) is reliable  # Timer D is zero on TCP


# --- rport and received -----------------------------------------------------------------------


def test_nat_request_gets_received_and_rport_and_answer_goes_back_to_the_nat() -> None:
    layer = TransactionLayer()
    nat = Address("UDP", "203.0.113.5", 40_000)
    req = request("REGISTER", via="SIP/2.0/UDP 192.168.1.10:5060;rport;branch=z9hG4bKnat1")
    (received,) = layer.receive(req, nat, 0.0)
    assert isinstance(received, RequestReceived) and received.tx is not None
    top = received.request.via[0]
    assert top.received == "203.0.113.5"
    assert top.rport == "40000"
    (send, *_) = layer.send_response(received.tx, answer(received.request, 200), 0.0)
    assert isinstance(send, Send)
    assert send.dest == nat
    assert b"received=203.0.113.5" in bytes(send.message)


def test_received_added_when_via_host_differs_and_answer_uses_via_port() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS", via="SIP/2.0/UDP phone.example.com:5070;branch=z9hG4bKr1")
    (received,) = layer.receive(req, Address("UDP", "198.51.100.7", 33_333), 0.0)
    assert isinstance(received, RequestReceived) and received.tx is not None
    assert received.request.via[0].received == "198.51.100.7"
    (send, *_) = layer.send_response(received.tx, answer(received.request, 200), 0.0)
    assert isinstance(send, Send) and send.dest == Address("UDP", "198.51.100.7", 5070)


def test_via_matching_source_is_left_alone_and_default_port_is_5060() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS", via="SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKr2")
    (received,) = layer.receive(req, Address("UDP", "10.0.0.1", 6000), 0.0)
    assert isinstance(received, RequestReceived) and received.tx is not None
    assert received.request.via[0].received is None
    (send, *_) = layer.send_response(received.tx, answer(received.request, 200), 0.0)
    assert isinstance(send, Send) and send.dest == Address("UDP", "10.0.0.1", 5060)


def test_tcp_answers_on_the_connection_the_request_came_from() -> None:
    layer = TransactionLayer()
    source = Address("TCP", "10.0.0.1", 51_234)
    req = request("OPTIONS", transport="TCP")
    (received,) = layer.receive(req, source, 0.0)
    assert isinstance(received, RequestReceived) and received.tx is not None
    (send, *_) = layer.send_response(received.tx, answer(req, 200), 0.0)
    assert isinstance(send, Send) and send.dest == source


# --- the transition tables, walked whole ------------------------------------------------------


class Walker:
    """Drives one transaction through inputs, recording the (state, input) pairs it walked."""

    def __init__(self, kind: TxKind) -> None:
        self.kind = kind
        self.walked: set[tuple[TxKind, TxState, str]] = set()
        self.now = 0.0
        self.layer = TransactionLayer()
        self.server = kind in (TxKind.INVITE_SERVER, TxKind.NON_INVITE_SERVER)
        method = "INVITE" if kind in (TxKind.INVITE_CLIENT, TxKind.INVITE_SERVER) else "BYE"
        self.req = request(method, branch=new_branch())
        if self.server:
            (event,) = self.layer.receive(self.req, ALICE, 0.0)
            assert isinstance(event, RequestReceived) and event.tx is not None
            self.key = event.tx
            self.req = event.request
        else:
            self.key, self.actions = self.layer.send_request(self.req, BOB, 0.0)

    def do(self, event: str, expected: TxState) -> list[Action]:
        before = self.layer.state(self.key)
        self.now += 0.1
        if event in ("1xx", "2xx", "300-699"):
            status = {"1xx": 180, "2xx": 200, "300-699": 486}[event]
            actions = self.layer.receive(answer(self.req, status), BOB, self.now)
        elif event.startswith("send "):
            status = {"send 1xx": 180, "send 2xx": 200, "send 300-699": 486}[event]
            actions = self.layer.send_response(self.key, answer(self.req, status), self.now)
        elif event == "request":
            actions = self.layer.receive(self.req, ALICE, self.now)
        elif event == "ack":
            ack = request("ACK", branch=self.key.branch, to_tag="b1")
            actions = self.layer.receive(ack, ALICE, self.now)
        elif event == "transport error":
            actions = self.layer.transport_failed(self.key, self.now)
        else:
            actions = self.layer.timer_fired(TimerKey(self.key, event), self.now)
        self.walked.add((self.kind, before, event))
        assert self.layer.state(self.key) is expected, (before, event)
        return actions


def walk(kind: TxKind, paths: list[list[tuple[str, TxState]]]) -> set[tuple[TxKind, TxState, str]]:
    walked: set[tuple[TxKind, TxState, str]] = set()
    for path in paths:
        walker = Walker(kind)
        for event, expected in path:
            walker.do(event, expected)
        walked |= walker.walked
        assert len(walker.layer) == (0 if path[-1][1] is TxState.TERMINATED else 1)
    return walked


def table_of(kind: TxKind) -> set[tuple[TxKind, TxState, str]]:
    return {key for key in TRANSITIONS if key[0] is kind}


S = TxState


def test_invite_client_transition_table_walked_whole() -> None:
    kind = TxKind.INVITE_CLIENT
    walked = walk(
        kind,
        [
            [
                ("A", S.CALLING),
                ("1xx", S.PROCEEDING),
                ("1xx", S.PROCEEDING),
                ("300-699", S.COMPLETED),
                ("300-699", S.COMPLETED),
                ("D", S.TERMINATED),
            ],
            [("B", S.TERMINATED)],
            [("2xx", S.ACCEPTED), ("2xx", S.ACCEPTED), ("M", S.TERMINATED)],
            [("300-699", S.COMPLETED), ("transport error", S.TERMINATED)],
            [("1xx", S.PROCEEDING), ("2xx", S.ACCEPTED), ("transport error", S.TERMINATED)],
            [("1xx", S.PROCEEDING), ("C", S.TERMINATED)],
            [("1xx", S.PROCEEDING), ("transport error", S.TERMINATED)],
            [("transport error", S.TERMINATED)],
        ],
    )
    assert walked == table_of(kind)


def test_non_invite_client_transition_table_walked_whole() -> None:
    kind = TxKind.NON_INVITE_CLIENT
    walked = walk(
        kind,
        [
            [
                ("E", S.TRYING),
                ("1xx", S.PROCEEDING),
                ("E", S.PROCEEDING),
                ("1xx", S.PROCEEDING),
                ("2xx", S.COMPLETED),
                ("K", S.TERMINATED),
            ],
            [("300-699", S.COMPLETED), ("transport error", S.TERMINATED)],
            [("2xx", S.COMPLETED), ("2xx", S.COMPLETED), ("K", S.TERMINATED)],
            [("F", S.TERMINATED)],
            [("1xx", S.PROCEEDING), ("F", S.TERMINATED)],
            [("1xx", S.PROCEEDING), ("300-699", S.COMPLETED)],
            [("1xx", S.PROCEEDING), ("transport error", S.TERMINATED)],
            [("transport error", S.TERMINATED)],
        ],
    )
    assert walked == table_of(kind) | {(kind, S.COMPLETED, "2xx")}  # a retransmission, absorbed


def test_invite_server_transition_table_walked_whole() -> None:
    kind = TxKind.INVITE_SERVER
    walked = walk(
        kind,
        [
            [
                ("request", S.PROCEEDING),
                ("send 1xx", S.PROCEEDING),
                ("request", S.PROCEEDING),
                ("send 300-699", S.COMPLETED),
                ("request", S.COMPLETED),
                ("G", S.COMPLETED),
                ("ack", S.CONFIRMED),
                ("I", S.TERMINATED),
            ],
            [("send 300-699", S.COMPLETED), ("H", S.TERMINATED)],
            [
                ("send 2xx", S.ACCEPTED),
                ("G", S.ACCEPTED),
                ("send 2xx", S.ACCEPTED),
                ("ack", S.ACCEPTED),
                ("L", S.TERMINATED),
            ],
            [("send 300-699", S.COMPLETED), ("transport error", S.TERMINATED)],
            [
                ("send 300-699", S.COMPLETED),
                ("ack", S.CONFIRMED),
                ("transport error", S.TERMINATED),
            ],
            [("send 2xx", S.ACCEPTED), ("transport error", S.TERMINATED)],
            [("transport error", S.TERMINATED)],
        ],
    )
    assert walked == table_of(kind)


def test_non_invite_server_transition_table_walked_whole() -> None:
    kind = TxKind.NON_INVITE_SERVER
    walked = walk(
        kind,
        [
            [
                ("request", S.TRYING),
                ("send 1xx", S.PROCEEDING),
                ("request", S.PROCEEDING),
                ("send 1xx", S.PROCEEDING),
                ("send 2xx", S.COMPLETED),
                ("request", S.COMPLETED),
                ("J", S.TERMINATED),
            ],
            [("send 300-699", S.COMPLETED), ("transport error", S.TERMINATED)],
            [("send 2xx", S.COMPLETED), ("J", S.TERMINATED)],
            [("send 1xx", S.PROCEEDING), ("send 300-699", S.COMPLETED)],
            [("send 1xx", S.PROCEEDING), ("transport error", S.TERMINATED)],
            [("transport error", S.TERMINATED)],
        ],
    )
    assert walked == table_of(kind) | {(kind, S.TRYING, "request")}  # nothing to resend yet


# --- TU misuse and strays ---------------------------------------------------------------------


def test_tu_misuse_raises_local_protocol_error() -> None:
    layer = TransactionLayer()
    with pytest.raises(LocalProtocolError, match="branch"):
        layer.send_request(request(branch="nocookie"), BOB, 0.0)
    with pytest.raises(LocalProtocolError, match="send_ack"):
        layer.send_request(request("ACK"), BOB, 0.0)
    key, _ = layer.send_request(request(), BOB, 0.0)
    with pytest.raises(LocalProtocolError, match="already exists"):
        layer.send_request(request(), BOB, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_response(key, answer(request(), 200), 0.0)  # a client transaction
    with pytest.raises(LocalProtocolError, match="send_ack"):
        layer.send_ack(request("BYE"), BOB)
    (event,) = layer.receive(request("OPTIONS"), ALICE, 0.0)
    assert isinstance(event, RequestReceived) and event.tx is not None
    layer.send_response(event.tx, answer(event.request, 404), 0.0)
    with pytest.raises(LocalProtocolError, match="cannot send 200 in state Completed"):
        layer.send_response(event.tx, answer(event.request, 200), 0.0)
    with pytest.raises(LocalProtocolError, match="no live server transaction"):
        layer.send_response(TxKey("z9hG4bKgone", "BYE", True), answer(event.request, 200), 0.0)


def test_response_matching_no_transaction_is_stray() -> None:
    layer = TransactionLayer()
    response = answer(request(), 200)
    assert layer.receive(response, BOB, 0.0) == [StrayResponse(response)]


def test_late_or_cancelled_timer_is_ignored() -> None:
    layer = TransactionLayer()
    key, _ = layer.send_request(request("OPTIONS"), BOB, 0.0)
    assert layer.timer_fired(TimerKey(key, "K"), 1.0) == []
    assert layer.timer_fired(TimerKey(TxKey("z9hG4bKx", "BYE", False), "F"), 1.0) == []


def test_ack_for_2xx_has_no_transaction_and_goes_up() -> None:
    layer = TransactionLayer()
    ack = request("ACK", branch="z9hG4bKnewack", to_tag="b1")
    (event,) = layer.receive(ack, ALICE, 0.0)
    assert event == RequestReceived(None, ack, ALICE)


def test_rfc2543_request_without_cookie_is_matched_by_its_fields() -> None:
    layer = TransactionLayer()
    invite = request(via="SIP/2.0/UDP 10.0.0.1:5060")
    (event,) = layer.receive(invite, ALICE, 0.0)
    assert isinstance(event, RequestReceived) and event.tx is not None
    layer.send_response(event.tx, answer(invite, 486), 0.0)
    (resend,) = layer.receive(request(via="SIP/2.0/UDP 10.0.0.1:5060"), ALICE, 0.1)
    assert isinstance(resend, Send) and bytes(resend.message).startswith(b"SIP/2.0 486")
    ack = request("ACK", via="SIP/2.0/UDP 10.0.0.1:5060", to_tag="b1")
    actions = layer.receive(ack, ALICE, 0.2)
    assert not any(isinstance(a, RequestReceived) for a in actions)  # absorbed by the INVITE tx
    assert layer.state(event.tx) is TxState.CONFIRMED


# --- any sequence of events --------------------------------------------------------------------

FATES = st.sampled_from(["deliver", "deliver", "deliver", "drop", "duplicate", "late"])
OPS = st.lists(
    st.tuples(
        st.sampled_from(["invite", "options", "bye", "cancel", "run", "misuse"]),
        st.integers(0, 3),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, fates=st.lists(FATES, min_size=1, max_size=50), seed=st.integers(0, 2**16))
def test_any_event_sequence_ends_with_every_transaction_gone(
    ops: list[tuple[str, int]], fates: list[str], seed: int
) -> None:
    rng = random.Random(seed)
    net = Net()
    alice, bob = net.endpoint(ALICE), net.endpoint(BOB)
    fate_iter = iter(fates * 100)
    net.fault = lambda data: next(fate_iter, "deliver")
    open_server: dict[TxKey, Request] = {}

    def bob_tu(ep: Endpoint, event: Action) -> None:
        if isinstance(event, RequestReceived) and event.tx is not None:
            open_server[event.tx] = event.request
            if rng.random() < 0.5:
                answer_one(event.tx)
        elif isinstance(event, TransactionTerminated):
            open_server.pop(event.tx, None)

    def answer_one(tx: TxKey) -> None:
        req = open_server[tx]
        status = rng.choice([100, 180, 200, 404, 487])
        with contextlib.suppress(LocalProtocolError):  # e.g. 487 after a 200: refused by name
            bob.respond(tx, answer(req, status))
        if bob.layer.state(tx) is not TxState.PROCEEDING and status >= 200:
            open_server.pop(tx, None)

    bob.on_event = bob_tu
    alice.on_event = uac_acks_2xx
    invites: list[Request] = []
    for op, n in ops:
        if op == "invite":
            invite = request(branch=new_branch(), seq=n + 1)
            invites.append(invite)
            alice.send_request(invite, BOB)
        elif op in ("options", "bye"):
            alice.send_request(request(op.upper(), branch=new_branch(), seq=n + 1), BOB)
        elif op == "cancel" and invites:
            with contextlib.suppress(LocalProtocolError):  # cancelled before: same branch
                alice.send_request(cancel_for(invites[n % len(invites)]), BOB)
        elif op == "run":
            net.run(until=net.now + n * T1_S * 3)
        elif op == "misuse":
            with pytest.raises(LocalProtocolError):
                bob.layer.send_response(
                    TxKey("z9hG4bKnone", "BYE", True), answer(request(), 200), 0
                )
        for tx in list(open_server):
            if rng.random() < 0.3 and tx in open_server:
                answer_one(tx)
    # The TU answers whatever it still holds, then the clock runs until every timer has fired.
    for _ in range(10):
        for tx in list(open_server):
            if tx in open_server:
                with contextlib.suppress(LocalProtocolError):
                    bob.respond(tx, answer(open_server[tx], 486))
                open_server.pop(tx, None)
        net.run()
    assert len(alice.layer) == 0
    assert len(bob.layer) == 0
    assert alice.timers == {} and bob.timers == {}


BRANCHES = st.sampled_from(["z9hG4bK1", "z9hG4bK2", "z9hG4bK3", "nocookie"])
METHODS = st.sampled_from(["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"])
STATUSES = st.sampled_from([100, 180, 200, 404, 487])
STEP = st.one_of(
    st.tuples(st.just("request"), METHODS, BRANCHES, STATUSES),
    st.tuples(st.just("response"), METHODS, BRANCHES, STATUSES),
    st.tuples(st.just("send"), METHODS, BRANCHES, STATUSES),
    st.tuples(st.just("answer"), st.sampled_from("ABCDEFGHIJKLM"), st.integers(0, 9), STATUSES),
    st.tuples(st.just("timer"), st.sampled_from("ABCDEFGHIJKLM"), st.integers(0, 9), STATUSES),
    st.tuples(st.just("fail"), st.just(""), st.integers(0, 9), STATUSES),
)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(STEP, max_size=40))
def test_any_input_sequence_raises_only_tu_misuse_and_drains(
    steps: list[tuple[str, str, str | int, int]],
) -> None:
    layer = TransactionLayer()
    timers: dict[TimerKey, float] = {}
    keys: list[TxKey] = []
    now = 0.0

    def apply(actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, StartTimer):
                timers[action.key] = action.at
            elif isinstance(action, CancelTimer):
                timers.pop(action.key, None)
            elif isinstance(action, RequestReceived) and action.tx is not None:
                keys.append(action.tx)

    for kind, name, pick, status in steps:
        now += 0.3
        try:
            if kind == "request":
                via = f"SIP/2.0/UDP 10.0.0.1:5060;branch={pick}"
                apply(layer.receive(request(name, via=via, to_tag="b1"), ALICE, now))
            elif kind == "response":
                req = request(name, branch=str(pick))
                apply(layer.receive(answer(req, status), BOB, now))
            elif kind == "send":
                key, actions = layer.send_request(request(name, branch=str(pick)), BOB, now)
                keys.append(key)
                apply(actions)
            elif keys and isinstance(pick, int):
                key = keys[pick % len(keys)]
                if kind == "answer":
                    apply(layer.send_response(key, answer(request(key.method), status), now))
                elif kind == "timer":
                    apply(layer.timer_fired(TimerKey(key, name), now))
                else:
                    apply(layer.transport_failed(key, now))
        except LocalProtocolError:
            pass  # the TU asked for something illegal and was told so by name
    for key in keys:  # the TU answers whatever it still holds ...
        with contextlib.suppress(LocalProtocolError):
            apply(layer.send_response(key, answer(request(key.method), 486), now))
    while timers:  # ... and every timer fires, in time order
        due = min(timers, key=lambda k: timers[k])
        now = max(now, timers.pop(due))
        apply(layer.timer_fired(due, now))
    assert len(layer) == 0


def test_same_branch_from_two_clients_makes_two_server_transactions() -> None:
    # RFC 3261 §17.2.3: the top Via's sent-by is part of the match, not the branch alone.
    layer = TransactionLayer()
    first = request("OPTIONS", via="SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsame")
    second = request("OPTIONS", via="SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKsame")

    got = layer.receive(first, ALICE, 0.0) + layer.receive(
        second, Address("UDP", "10.0.0.9", 5060), 0.0
    )

    received = [a for a in got if isinstance(a, RequestReceived)]
    assert len(received) == 2 and received[0].tx != received[1].tx
    assert len(layer) == 2
