"""A fake network around the PBX: its `Endpoint` over a real `TransactionLayer` and a fake clock.

Everything the PBX sends is serialized to bytes, parsed back and kept per destination address;
scripted phones (and providers) answer with real SIP bytes. Nothing here opens a socket or reads
the clock: `Network.advance` moves time and fires the timers that came due, in order.
"""

from __future__ import annotations

import secrets
from collections import defaultdict, deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace

from callplane.core.dialplan import DialPlan
from callplane.core.sip.address import Address
from callplane.core.sip.dialog import ack_for_non2xx, new_branch, new_tag
from callplane.core.sip.digest import NONCE_TTL_S, answer_challenge, pick_challenge
from callplane.core.sip.errors import LocalProtocolError, SipParseError
from callplane.core.sip.headers import Headers
from callplane.core.sip.message import Message, Request, Response, make_response, parse
from callplane.core.sip.transaction import (
    Action,
    CancelTimer,
    RequestReceived,
    ResponseReceived,
    Send,
    StartTimer,
    StrayResponse,
    TimerKey,
    TransactionLayer,
    TransactionTimedOut,
    TxKey,
)
from callplane.pbx.auth import Authenticator
from callplane.pbx.endpoint import MediaBridge
from callplane.pbx.registrar import Registrar, StoreOp
from callplane.pbx.service import Pbx
from callplane.store.records import (
    CdrRec,
    DidRec,
    Directory,
    ExtensionRec,
    RegistrationRec,
    TenantRec,
    TrunkRec,
)

START = 1_700_000_000.0  # the fake clock's first reading, epoch seconds
PBX_ADDRESS = Address("UDP", "192.0.2.1", 5060)
DOMAIN = "acme.example"
PROVIDER_HOST = "203.0.113.5"
DID_NUMBER = "+33142685300"  # a Paris number routed to 1002
SDP_OFFER = b"v=0\r\no=alice 1 1 IN IP4 10.0.0.11\r\ns=-\r\nc=IN IP4 10.0.0.11\r\nt=0 0\r\n"
SDP_ANSWER = b"v=0\r\no=bob 1 1 IN IP4 10.0.0.12\r\ns=-\r\nc=IN IP4 10.0.0.12\r\nt=0 0\r\n"

TENANT = TenantRec(1, "acme", DOMAIN, "FR", "Europe/Paris", DialPlan(country="FR"))
EXTENSIONS = (
    ExtensionRec(1, 1, "1001", "pw-1001", "Alice", caller_id_number="+33140000001"),
    ExtensionRec(2, 1, "1002", "pw-1002", "Bob", ring_timeout_s=20),
    ExtensionRec(3, 1, "1003", "pw-1003", "Carol"),
)
TRUNK = TrunkRec(
    1, 1, "provider", PROVIDER_HOST, username="acme", password="trunk-pw",
    caller_id_number="+33140000000",
)  # fmt: skip
DID = DidRec(1, 1, 1, DID_NUMBER, "extension", "1002")


def directory(
    *,
    trunk: TrunkRec | None = TRUNK,
    plan: DialPlan | None = None,
    extensions: Iterable[ExtensionRec] = EXTENSIONS,
) -> Directory:
    """The demo tenant: extensions 1001-1003, one provider trunk and one DID to 1002."""
    tenant = TENANT if plan is None else replace(TENANT, dial_plan=plan)
    trunks = (trunk,) if trunk is not None else ()
    return Directory((tenant,), tuple(extensions), trunks, (DID,) if trunk else ())


class Network:
    """The PBX's `Endpoint`: a real transaction layer, a fake clock, and what went where."""

    def __init__(
        self, directory: Directory, *, registrations: Iterable[RegistrationRec] = ()
    ) -> None:
        self.now = START
        self.layer = TransactionLayer()
        self.sent: defaultdict[Address, list[Message]] = defaultdict(list)
        self.cdrs: list[CdrRec] = []
        self.store_ops: list[StoreOp] = []
        self._timers: dict[Hashable, float] = {}
        self._peers: dict[Address, Phone] = {}
        self._inbound: deque[tuple[bytes, Address]] = deque()
        self._reactions: deque[tuple[Phone, Message]] = deque()
        self._busy = False
        self.media: Callable[[], MediaBridge] | None = None
        registrar = Registrar()
        registrar.restore(list(registrations), self.now)
        authenticator = Authenticator(directory, b"k" * 32, nonce_ttl_s=NONCE_TTL_S)
        self.pbx = Pbx(self, directory, registrar, authenticator, self.store_ops.append)
        self.pbx.start(self.now)
        self._drain()

    def attach(self, phone: Phone) -> None:
        self._peers[phone.address] = phone

    # --- what peers do -------------------------------------------------------------------------

    def deliver(self, data: bytes, source: Address) -> None:
        """Bytes from `source` reach the PBX; everything that follows is run to quiescence."""
        self._inbound.append((data, source))
        self._drain()

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every timer that comes due on the way, earliest first."""
        end = self.now + seconds
        while self._timers:
            key, at = min(self._timers.items(), key=lambda item: item[1])
            if at > end:
                break
            del self._timers[key]
            self.now = max(self.now, at)
            if isinstance(key, TimerKey):
                self._run(self.layer.timer_fired(key, self.now))
            elif isinstance(key, tuple):
                self.pbx.timer_fired(key[1], self.now)
            self._drain()
        self.now = end

    def _drain(self) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            while self._inbound or self._reactions:
                if self._reactions:
                    phone, message = self._reactions.popleft()
                    phone.react(message)
                    continue
                data, source = self._inbound.popleft()
                try:
                    actions = self.layer.receive(parse(data), source, self.now)
                except SipParseError:
                    continue
                self._run(actions)
        finally:
            self._busy = False

    def _run(self, actions: list[Action]) -> None:
        pbx, now = self.pbx, self.now
        for action in actions:
            if isinstance(action, Send):
                message = parse(bytes(action.message))  # what the peer gets is real bytes
                self.sent[action.dest].append(message)
                peer = self._peers.get(action.dest)
                if peer is not None:
                    self._reactions.append((peer, message))
            elif isinstance(action, StartTimer):
                self._timers[action.key] = action.at
            elif isinstance(action, CancelTimer):
                self._timers.pop(action.key, None)
            elif isinstance(action, RequestReceived):
                pbx.on_request(action.tx, action.request, action.source, now)
            elif isinstance(action, ResponseReceived):
                pbx.on_response(action.tx, action.response, now)
            elif isinstance(action, TransactionTimedOut):
                pbx.on_timeout(action.tx, action.status, now)
            elif isinstance(action, StrayResponse):
                pbx.on_stray_response(action.response, now)

    # --- the Endpoint protocol -----------------------------------------------------------------

    def send_request(self, request: Request, dest: Address) -> TxKey:
        key, actions = self.layer.send_request(request, dest, self.now)
        self._run(actions)
        return key

    def send_response(self, tx: TxKey, response: Response) -> None:
        try:
            actions = self.layer.send_response(tx, response, self.now)
        except LocalProtocolError:  # the transaction is gone: ignored, as the shell does
            return
        self._run(actions)

    def send_ack(self, ack: Request, dest: Address) -> None:
        self._run(self.layer.send_ack(ack, dest))

    def via(self, transport: str, dest: Address) -> str:
        return f"SIP/2.0/{transport} {PBX_ADDRESS.host}:5060;branch={new_branch()};rport"

    def contact(self, transport: str, dest: Address, user: str = "callplane") -> str:
        prefix = f"{user}@" if user else ""
        return f"<sip:{prefix}{PBX_ADDRESS.host}:5060>"

    def start_timer(self, key: Hashable, at: float) -> None:
        self._timers[("tu", key)] = at

    def cancel_timer(self, key: Hashable) -> None:
        self._timers.pop(("tu", key), None)

    def write_cdr(self, cdr: CdrRec) -> None:
        self.cdrs.append(cdr)

    def local_host(self, dest: Address) -> str:
        return PBX_ADDRESS.host

    def open_media(self) -> MediaBridge | None:
        """No media unless a test gives the network a bridge factory (`media`)."""
        return self.media() if self.media is not None else None


@dataclass(slots=True)
class PhoneDialog:
    """One dialog as a scripted phone keeps it (RFC 3261 §12, just enough to send requests)."""

    call_id: str
    local: str  # our From value without tag, e.g. <sip:1001@acme.example>
    local_tag: str
    remote: str
    remote_tag: str
    remote_target: str
    cseq: int


@dataclass(slots=True)
class Outgoing:
    """A call a phone placed: its INVITE (the last one, after any challenge) and its dialog."""

    invite: Request
    dialog: PhoneDialog | None = None


@dataclass(slots=True)
class Incoming:
    """An INVITE the PBX sent a phone, and the To tag the phone answers with."""

    invite: Request
    tag: str = field(default_factory=new_tag)
    final: int | None = None

    @property
    def call_id(self) -> str:
        return self.invite.call_id


class Phone:
    """A scripted SIP phone (or provider) at `address` that speaks real bytes to the PBX.

    Like a UA's transaction layer it ACKs non-2xx final responses to its INVITEs, answers BYE
    with 200 and CANCEL with 200 plus 487 to the INVITE; everything else the test scripts.
    """

    def __init__(
        self,
        net: Network,
        number: str,
        host: str,
        *,
        password: str = "",
        domain: str = DOMAIN,
        port: int = 5060,
    ) -> None:
        self.net = net
        self.number = number
        self.password = password or f"pw-{number}"
        self.domain = domain
        self.address = Address("UDP", host, port)
        self.incoming_calls: dict[str, Incoming] = {}  # by the INVITE's branch
        self.answers_cancel = True  # False: a CANCEL is lost or crosses our 2xx
        self._invites: dict[str, Request] = {}
        self._register_call_id = f"{secrets.token_hex(6)}@{host}"
        self._register_cseq = 0
        net.attach(self)

    # --- what arrived ----------------------------------------------------------------------------

    @property
    def inbox(self) -> list[Message]:
        return self.net.sent[self.address]

    def requests(self, method: str) -> list[Request]:
        return [m for m in self.inbox if isinstance(m, Request) and m.method == method]

    def statuses(self, request: Request) -> list[int]:
        """Statuses of the responses to `request` (same Call-ID and CSeq), repeats removed."""
        seen: list[int] = []
        for m in self.inbox:
            if (
                isinstance(m, Response)
                and m.call_id == request.call_id
                and m.cseq == request.cseq
                and m.status not in seen
            ):
                seen.append(m.status)
        return seen

    def final(self, request: Request) -> Response | None:
        """The first final response to `request`."""
        for m in self.inbox:
            if (
                isinstance(m, Response)
                and m.status >= 200
                and m.call_id == request.call_id
                and m.cseq == request.cseq
            ):
                return m
        return None

    def incoming(self) -> Incoming:
        """The latest new call (INVITE without To tag) the PBX sent this phone."""
        fresh = [r for r in self.requests("INVITE") if r.to.tag is None]
        assert fresh, f"{self.number} never rang"
        invite = fresh[-1]
        return self.incoming_calls.setdefault(_branch(invite), Incoming(invite))

    # --- sending ---------------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        self.net.deliver(bytes(message), self.address)

    def uri(self) -> str:
        return f"sip:{self.number}@{self.domain}"

    def contact(self) -> str:
        return f"<sip:{self.number}@{self.address.host}:{self.address.port}>"

    def via(self) -> str:
        return f"SIP/2.0/UDP {self.address.host}:{self.address.port};branch={new_branch()};rport"

    def register(
        self,
        *,
        expires: int | None = 3600,
        contact: str | None = None,
        password: str = "",
        answer_after_s: float = 0.0,
        aor: str | None = None,
    ) -> Response:
        """REGISTER, answering the 401 once (`answer_after_s` later); returns the final response."""
        authorization: str | None = None
        response: Response | None = None
        for _ in range(2):
            self._register_cseq += 1
            headers = Headers()
            headers.add("Via", self.via())
            headers.add("Max-Forwards", "70")
            headers.add("From", f"<{aor or self.uri()}>;tag={new_tag()}")
            headers.add("To", f"<{aor or self.uri()}>")
            headers.add("Call-ID", self._register_call_id)
            headers.add("CSeq", f"{self._register_cseq} REGISTER")
            headers.add("Contact", contact or self.contact())
            if expires is not None:
                headers.add("Expires", str(expires))
            if authorization is not None:
                headers.add("Authorization", authorization)
            request = Request("REGISTER", f"sip:{self.domain}", headers)
            self.send(request)
            response = self.final(request)
            assert response is not None, "no answer to REGISTER"
            if response.status != 401 or authorization is not None:
                return response
            self.net.advance(answer_after_s)
            authorization = answer_challenge(
                pick_challenge(response.headers.get_all("WWW-Authenticate")),
                method="REGISTER", uri=request.uri, username=self.number,
                password=password or self.password, cnonce=secrets.token_hex(4),
            )  # fmt: skip
        assert response is not None
        return response

    def call(
        self,
        dialled: str,
        *,
        body: bytes = SDP_OFFER,
        from_user: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        authenticate: bool = True,
        max_forwards: int = 70,
        request_user: str | None = None,
    ) -> Outgoing:
        """INVITE `dialled` through the PBX, answering its 407 once as a phone does.

        `request_user` puts another user in the Request-URI than in To (`dialled`), as a
        provider calling the Contact the PBX registered does.
        """
        call_id = f"{secrets.token_hex(6)}@{self.address.host}"
        tag = new_tag()
        to = f"sip:{dialled}@{self.domain}"
        ruri = f"sip:{request_user}@{self.domain}" if request_user else to
        authorization: str | None = None
        for seq in (1, 2):
            h = Headers()
            h.add("Via", self.via())
            h.add("Max-Forwards", str(max_forwards))
            h.add("From", f"<sip:{from_user or self.number}@{self.domain}>;tag={tag}")
            h.add("To", f"<{to}>")
            h.add("Call-ID", call_id)
            h.add("CSeq", f"{seq} INVITE")
            h.add("Contact", self.contact())
            for name, value in headers:
                h.add(name, value)
            if body:
                h.add("Content-Type", "application/sdp")
            if authorization is not None:
                h.add("Proxy-Authorization", authorization)
            invite = Request("INVITE", ruri, h, body)
            self._invites[_branch(invite)] = invite
            self.send(invite)
            final = self.final(invite)
            if final is None or final.status != 407 or not authenticate or authorization:
                break
            authorization = answer_challenge(
                pick_challenge(final.headers.get_all("Proxy-Authenticate")),
                method="INVITE", uri=ruri, username=self.number, password=self.password,
                cnonce=secrets.token_hex(4),
            )  # fmt: skip
        return Outgoing(invite)

    def ack(self, call: Outgoing, body: bytes = b"") -> PhoneDialog:
        """ACK the 2xx to our INVITE (RFC 3261 §13.2.2.4) and keep the dialog it made."""
        ok = self.final(call.invite)
        assert ok is not None and ok.status == 200, f"call not answered: {ok}"
        contact = ok.contacts
        assert contact != "*" and contact
        call.dialog = PhoneDialog(
            call_id=call.invite.call_id,
            local=f"<{call.invite.from_.uri}>",
            local_tag=call.invite.from_.tag or "",
            remote=f"<{call.invite.to.uri}>",
            remote_tag=ok.to.tag or "",
            remote_target=str(contact[0].uri),
            cseq=call.invite.cseq.seq,
        )
        self.send(self._in_dialog(call.dialog, "ACK", body=body, seq=call.invite.cseq.seq))
        return call.dialog

    def ack_in_dialog(self, dialog: PhoneDialog, invite: Request, body: bytes = b"") -> None:
        """ACK the 2xx to a re-INVITE we sent inside `dialog`."""
        self.send(self._in_dialog(dialog, "ACK", body=body, seq=invite.cseq.seq))

    def respond(
        self,
        call: Incoming | Request,
        status: int,
        *,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
    ) -> Response:
        """Answer an INVITE the PBX sent (1xx with tag, 2xx with Contact, or a failure)."""
        incoming = call if isinstance(call, Incoming) else Incoming(call)
        extra = [*headers]
        if 100 < status < 300:
            extra.append(("Contact", self.contact()))
        if body:
            extra.append(("Content-Type", "application/sdp"))
        to_tag = incoming.tag if status > 100 else None
        response = make_response(incoming.invite, status, to_tag=to_tag, headers=extra, body=body)
        if status >= 200:
            incoming.final = status
        self.send(response)
        return response

    def answer(self, call: Incoming, body: bytes = SDP_ANSWER) -> PhoneDialog:
        """180, then 200 with SDP; returns the callee's side of the dialog."""
        self.respond(call, 180)
        self.respond(call, 200, body=body)
        return self.dialog_of(call)

    def dialog_of(self, call: Incoming) -> PhoneDialog:
        invite = call.invite
        target = invite.contacts
        assert target != "*" and target
        return PhoneDialog(
            call_id=invite.call_id,
            local=f"<{invite.to.uri}>",
            local_tag=call.tag,
            remote=f"<{invite.from_.uri}>",
            remote_tag=invite.from_.tag or "",
            remote_target=str(target[0].uri),
            cseq=100,
        )

    def in_dialog(self, dialog: PhoneDialog, method: str, *, body: bytes = b"") -> Request:
        """Send BYE, re-INVITE, UPDATE or INFO inside `dialog`; returns the request sent."""
        dialog.cseq += 1
        request = self._in_dialog(dialog, method, body=body, seq=dialog.cseq)
        self.send(request)
        return request

    def _in_dialog(self, dialog: PhoneDialog, method: str, *, body: bytes, seq: int) -> Request:
        h = Headers()
        h.add("Via", self.via())
        h.add("Max-Forwards", "70")
        h.add("From", f"{dialog.local};tag={dialog.local_tag}")
        h.add("To", f"{dialog.remote};tag={dialog.remote_tag}")
        h.add("Call-ID", dialog.call_id)
        h.add("CSeq", f"{seq} {method}")
        if method in ("INVITE", "UPDATE"):
            h.add("Contact", self.contact())
        if body:
            h.add("Content-Type", "application/sdp")
        return Request(method, dialog.remote_target, h, body)

    # --- what a UA does on its own ---------------------------------------------------------------

    def react(self, message: Message) -> None:
        if isinstance(message, Response):
            invite = self._invites.get(_branch(message))
            if invite is not None and message.cseq.method == "INVITE" and message.status >= 300:
                self.send(ack_for_non2xx(invite, message))
            return
        if message.method == "BYE":
            self.send(make_response(message, 200))
        elif message.method == "CANCEL" and self.answers_cancel:
            self.send(make_response(message, 200))
            branch = _branch(message)
            invite = next(r for r in self.requests("INVITE") if _branch(r) == branch)
            pending = self.incoming_calls.setdefault(branch, Incoming(invite))
            if pending.final is None:
                self.respond(pending, 487)


def _branch(message: Message) -> str:
    return message.via[0].branch or ""
