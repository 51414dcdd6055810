"""The back-to-back user agent: each call is an A leg (the caller) and B legs (the callee's phones).

Callplane ends the caller's dialog and starts its own towards each registered contact of the
callee (parallel forking); the first to answer wins and the others are cancelled. Requests inside
the call (re-INVITE, UPDATE, INFO, BYE) are relayed between the two dialogs, SDP passed through
unchanged. The B2BUA owns no socket and no clock: it acts through an `Endpoint` and is told `now`.

Call states, logged as `old -> event -> new`:

    ringing --answer--> answered --bye/timeout--> ended
    ringing --cancel/no answer/all forks failed--> ended
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Hashable
from dataclasses import dataclass, field

from callplane.core.anchor import anchor
from callplane.core.offer_answer import NoCommonCodec, answer_offer
from callplane.core.sdp import SdpError
from callplane.core.sdp import parse as parse_sdp
from callplane.core.sip.address import Address
from callplane.core.sip.dialog import (
    Dialog,
    DialogState,
    cancel_for,
    dialog_as_uac,
    dialog_as_uas,
    new_tag,
)
from callplane.core.sip.digest import answer_challenge, pick_challenge
from callplane.core.sip.errors import LocalProtocolError, RemoteProtocolError, SipParseError
from callplane.core.sip.message import Headers, Request, Response, make_response
from callplane.core.sip.transaction import TxKey
from callplane.pbx.endpoint import Endpoint, MediaBridge
from callplane.store.records import CdrRec, TenantRec, TrunkRec

log = logging.getLogger("callplane.b2bua")

# Headers copied from one leg's INVITE or in-dialog request to the other's: the rest (Via, Route,
# Contact, Record-Route, tags, auth, Supported/Require with extensions we do not relay such as
# 100rel) belongs to one hop only.
RELAYED_HEADERS = frozenset(
    {"content-type", "content-disposition", "content-encoding", "content-language", "allow",
     "accept", "user-agent", "subject", "priority", "session-expires", "min-se", "event",
     "info-package", "recv-info", "reason"}
)  # fmt: skip
MAX_AUTH_ATTEMPTS = 1  # a provider that rejects our answer once will reject it again
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REGISTER"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one B leg goes: request-URI, network address, identities and (for trunks) the trunk."""

    ruri: str
    address: Address
    from_uri: str
    from_display: str | None
    to_uri: str
    trunk: TrunkRec | None = None


@dataclass(eq=False, slots=True)
class Leg:
    """One side's INVITE dialog as this B2BUA sees it."""

    side: str
    invite: Request
    address: Address
    local_tag: str
    tx: TxKey | None = None
    dialog: Dialog | None = None
    trunk: TrunkRec | None = None
    final: int | None = None
    auth_attempts: int = 0
    cancelled: bool = False
    held_2xx: Response | None = None


@dataclass(frozen=True, slots=True)
class CallTimer:
    """A TU timer of one call: `ring` (no answer), nothing else yet."""

    call_ref: str
    name: str


@dataclass(eq=False, slots=True)
class Relay:
    """A request relayed from one leg to the other, waiting for the far side's answer."""

    call: Call
    from_leg: Leg
    server_tx: TxKey
    request: Request


@dataclass(eq=False, slots=True)
class Call:
    """One bridged call and what its CDR will say."""

    ref: str
    tenant: TenantRec
    direction: str
    a: Leg
    from_number: str
    to_number: str
    trunk_id: int | None
    started_at: float
    forks: list[Leg] = field(default_factory=list)
    b: Leg | None = None
    state: str = "ringing"
    answered_at: float | None = None
    failures: list[Response] = field(default_factory=list)
    media: MediaBridge | None = None


class B2bua:
    """All calls of the PBX; the dispatcher hands it new INVITEs and everything inside calls."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._ep = endpoint
        self._calls: dict[str, Call] = {}
        self._by_server_tx: dict[TxKey, Call] = {}
        self._by_client_tx: dict[TxKey, tuple[Call, Leg] | Relay] = {}
        self._by_dialog: dict[tuple[str, str], tuple[Call, Leg]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    # --- new calls -----------------------------------------------------------------------------

    def start_call(
        self,
        tx: TxKey,
        invite: Request,
        source: Address,
        now: float,
        *,
        tenant: TenantRec,
        direction: str,
        from_number: str,
        to_number: str,
        destinations: list[Destination],
        ring_timeout_s: float,
        trunk_id: int | None = None,
    ) -> None:
        """Fork `invite` to every destination and ring for at most `ring_timeout_s`."""
        a = Leg("a", invite, source, new_tag(), tx=tx)
        call = Call(
            secrets.token_hex(8), tenant, direction, a, from_number, to_number, trunk_id, now
        )
        call.media = self._ep.open_media()
        if call.media is not None and _is_sdp(invite.headers, invite.body):
            # Anchored media must be something Callplane can carry: no common codec is 488.
            try:
                answer_offer(parse_sdp(invite.body), "127.0.0.1", 1)
            except (SdpError, NoCommonCodec) as exc:
                call.media.close()
                self._ep.send_response(
                    tx, make_response(invite, exc.status, exc.reason, to_tag=a.local_tag)
                )
                return
        self._calls[call.ref] = call
        self._by_server_tx[tx] = call
        self._ep.send_response(tx, make_response(invite, 100))
        log.info(
            "call %s: %s %s -> %s (%d destination(s))",
            call.ref, direction, from_number, to_number, len(destinations),
        )  # fmt: skip
        for dest in destinations:
            self._fork(call, dest)
        self._ep.start_timer(CallTimer(call.ref, "ring"), now + ring_timeout_s)

    def _fork(self, call: Call, dest: Destination) -> None:
        a = call.a.invite
        headers = Headers()
        headers.add("Via", self._ep.via(dest.address.transport, dest.address))
        try:
            hops = int(a.headers.get("Max-Forwards") or "70")
        except ValueError:
            hops = 70
        headers.add("Max-Forwards", str(max(hops - 1, 0)))
        tag = new_tag()
        display = f'"{dest.from_display}" ' if dest.from_display else ""
        headers.add("From", f"{display}<{dest.from_uri}>;tag={tag}")
        headers.add("To", f"<{dest.to_uri}>")
        headers.add("Call-ID", f"{secrets.token_hex(12)}@callplane")
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", self._ep.contact(dest.address.transport, dest.address))
        _copy_relayed(a.headers, headers)
        body = self._anchor(call, a.headers, a.body, toward_b=True, dest=dest.address)
        invite = Request("INVITE", dest.ruri, headers, body)
        leg = Leg("b", invite, dest.address, tag, trunk=dest.trunk)
        call.forks.append(leg)
        self._send_invite(call, leg)

    def _send_invite(self, call: Call, leg: Leg) -> None:
        leg.tx = self._ep.send_request(leg.invite, leg.address)
        self._by_client_tx[leg.tx] = (call, leg)

    # --- responses on B legs -------------------------------------------------------------------

    def on_response(self, tx: TxKey, response: Response, now: float) -> None:
        entry = self._by_client_tx.get(tx)
        if entry is None:
            return
        if isinstance(entry, Relay):
            self._relay_response(entry, response)
            if response.status >= 200:
                self._by_client_tx.pop(tx, None)
            return
        call, leg = entry
        if response.cseq.method == "INVITE":
            self._invite_response(call, leg, response, now)
        if response.status >= 200 and call.state == "ended":
            self._by_client_tx.pop(tx, None)  # a late final answer on a fork: handled above

    def on_timeout(self, tx: TxKey, status: int, now: float) -> None:
        """A client transaction gave up (408/503) or a server one never got its ACK."""
        call = self._by_server_tx.pop(tx, None)
        if call is not None and call.state == "answered":
            log.info("call %s: caller never ACKed the 200", call.ref)
            self._hang_up_both(call, now, "system", "no_ack", None)
            return
        entry = self._by_client_tx.pop(tx, None)
        if entry is None:
            return
        if isinstance(entry, Relay):
            reason = "Request Timeout" if status == 408 else "Service Unavailable"
            self._relay_response(entry, make_response(entry.request, status, reason))
            return
        call, leg = entry
        if leg.final is None and leg.invite.method == "INVITE" and tx.method == "INVITE":
            reason = "Request Timeout" if status == 408 else "Service Unavailable"
            self._fork_failed(call, leg, make_response(leg.invite, status, reason), now)

    def on_stray_response(self, response: Response, now: float) -> None:
        """A 2xx to an INVITE whose transaction is gone: re-ACK it from its dialog (§13.2.2.4)."""
        if response.status < 200 or response.status >= 300 or response.cseq.method != "INVITE":
            return
        entry = self._by_dialog.get((response.call_id, response.from_.tag or ""))
        if entry is None:
            return
        _, leg = entry
        if leg.dialog is not None and leg.side == "b":
            ack = leg.dialog.ack_for(
                leg.invite, response, via=self._ep.via(leg.address.transport, leg.address)
            )
            self._ep.send_ack(ack, leg.address)

    def _invite_response(self, call: Call, leg: Leg, response: Response, now: float) -> None:
        status = response.status
        if status < 200:
            if status == 100 or response.to.tag is None:
                return
            if leg.dialog is None:
                leg.dialog = dialog_as_uac(leg.invite, response)
                self._by_dialog[(leg.dialog.call_id, leg.local_tag)] = (call, leg)
            if call.state == "ringing" and not leg.cancelled:
                self._answer_a(call, status, response.reason, response)
            return
        if status < 300:
            self._invite_answered(call, leg, response, now)
            return
        leg.final = status
        if status in (401, 407):
            if leg.trunk is not None and self._retry_with_auth(call, leg, response):
                return
            # The challenge was for our credentials, not the caller's: a 401/407 passed back
            # would lack the challenge RFC 3261 §22.3 requires and ask the caller to retry.
            response = make_response(leg.invite, 403, "Callee Authentication Failed")
        self._fork_failed(call, leg, response, now)

    def _retry_with_auth(self, call: Call, leg: Leg, response: Response) -> bool:
        """Answer a provider's digest challenge once (RFC 3261 §22.2), with a new INVITE."""
        trunk = leg.trunk
        assert trunk is not None
        if leg.auth_attempts >= MAX_AUTH_ATTEMPTS or not trunk.password or call.state != "ringing":
            return False
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        challenges = response.headers.get_all(name)
        if not challenges:
            return False
        try:
            value = answer_challenge(
                pick_challenge(challenges),
                method="INVITE",
                uri=leg.invite.uri,
                username=trunk.auth_username or trunk.username or "",
                password=trunk.password,
                cnonce=secrets.token_hex(8),
            )
        except SipParseError as exc:
            log.warning("trunk %s: cannot answer challenge: %s", trunk.name, exc.reason)
            return False
        if leg.tx is not None:
            self._by_client_tx.pop(leg.tx, None)
        headers = leg.invite.headers.copy()
        headers.set("Via", self._ep.via(leg.address.transport, leg.address))
        headers.set("CSeq", f"{leg.invite.cseq.seq + 1} INVITE")
        header = "Authorization" if response.status == 401 else "Proxy-Authorization"
        headers.set(header, value)
        leg.invite = Request("INVITE", leg.invite.uri, headers, leg.invite.body)
        leg.auth_attempts += 1
        leg.final = None
        self._send_invite(call, leg)
        return True

    def _invite_answered(self, call: Call, leg: Leg, response: Response, now: float) -> None:
        if leg.dialog is None or leg.dialog.remote_tag != response.to.tag:
            leg.dialog = dialog_as_uac(leg.invite, response)
            self._by_dialog[(leg.dialog.call_id, leg.local_tag)] = (call, leg)
        else:
            leg.dialog.update_from_response(response)
        late_offer = not call.a.invite.body and call.state == "ringing" and not leg.cancelled
        if leg.final is not None and leg.final < 300:
            if leg.held_2xx is None:
                self._ack_b(leg, response, None)  # a retransmitted 2xx: ACK it again
            return
        leg.final = response.status
        if late_offer:
            leg.held_2xx = response  # RFC 3264 late offer: the ACK must carry the caller's answer
        else:
            self._ack_b(leg, response, None)
        if call.state != "ringing" or leg.cancelled:
            # Answered after the call ended or another phone won: hang this one up (§15).
            self._send_bye(call, leg)
            return
        self._move(call, "answer", "answered")
        call.b = leg
        call.answered_at = now
        self._ep.cancel_timer(CallTimer(call.ref, "ring"))
        for other in call.forks:
            if other is not leg and other.final is None:
                self._cancel_fork(other)
        self._answer_a(call, response.status, response.reason, response)

    def _answer_a(self, call: Call, status: int, reason: str, far: Response) -> None:
        """Send a 1xx or 2xx to the caller with the callee's body (SDP passed through)."""
        a = call.a
        headers = [("Contact", self._ep.contact(a.address.transport, a.address))]
        headers += [(n, v) for n, v in far.headers if n.lower() in RELAYED_HEADERS]
        body = self._anchor(call, far.headers, far.body, toward_b=False, dest=a.address)
        response = make_response(
            a.invite, status, reason, to_tag=a.local_tag, headers=headers, body=body
        )
        if a.dialog is None:
            a.dialog = dialog_as_uas(a.invite, response)
            self._by_dialog[(a.dialog.call_id, a.local_tag)] = (call, a)
        if status >= 200:
            a.dialog.confirm()
            a.final = status
        if a.tx is not None:
            self._ep.send_response(a.tx, response)

    def _fork_failed(self, call: Call, leg: Leg, response: Response, now: float) -> None:
        leg.final = response.status
        if leg.dialog is not None:
            self._by_dialog.pop((leg.dialog.call_id, leg.local_tag), None)
        if call.state != "ringing":
            return
        call.failures.append(response)
        if response.status >= 600:
            for other in call.forks:
                if other.final is None:
                    self._cancel_fork(other)
        elif any(f.final is None for f in call.forks):
            return
        best = _best_failure(call.failures)
        self._fail_call(call, best.status, best.reason, now, "callee", _cause(best.status))

    # --- requests from either leg --------------------------------------------------------------

    def on_cancel(self, tx: TxKey, cancel: Request, invite_tx: TxKey | None, now: float) -> None:
        """RFC 3261 §9.2: 200 to the CANCEL, 487 to the INVITE, and cancel the B legs."""
        call = self._by_server_tx.get(invite_tx) if invite_tx is not None else None
        if call is None:
            self._ep.send_response(tx, make_response(cancel, 481, to_tag=new_tag()))
            return
        self._ep.send_response(tx, make_response(cancel, 200, to_tag=call.a.local_tag))
        if call.state == "ringing":
            self._fail_call(call, 487, "Request Terminated", now, "caller", "cancelled")

    def on_ack(self, ack: Request, now: float) -> None:
        """An ACK for a 2xx we sent the caller; for a late offer it carries the B leg's answer."""
        entry = self._by_dialog.get((ack.call_id, ack.to.tag or ""))
        if entry is None:
            return
        call, leg = entry
        b = call.b
        if leg is call.a and b is not None and b.held_2xx is not None:
            body = self._anchor(call, ack.headers, ack.body, toward_b=True, dest=b.address)
            self._ack_b(b, b.held_2xx, ack.headers.get("Content-Type"), body)
            b.held_2xx = None

    def _ack_b(
        self, leg: Leg, response: Response, content_type: str | None = None, body: bytes = b""
    ) -> None:
        assert leg.dialog is not None
        ack = leg.dialog.ack_for(
            leg.invite, response, via=self._ep.via(leg.address.transport, leg.address)
        )
        if body:
            ack.body = body
            if content_type:
                ack.headers.set("Content-Type", content_type)
        self._ep.send_ack(ack, leg.address)

    def _anchor(
        self, call: Call, headers: Headers, body: bytes, *, toward_b: bool, dest: Address
    ) -> bytes:
        """An SDP crossing the bridge, pointed at our relay port facing its receiver.

        The sender's advertised address is what the relay port facing the sender expects;
        a body that is not SDP, or a call without anchored media, passes unchanged.
        """
        media = call.media
        if media is None or not _is_sdp(headers, body):
            return body
        port = media.b_port if toward_b else media.a_port
        try:
            anchored = anchor(body, self._ep.local_host(dest), port)
        except SdpError as exc:
            log.info("call %s: SDP not anchored: %s", call.ref, exc.reason)
            return body
        media.allow(anchored.payload_types)
        if anchored.peer is not None:
            expect = media.expect_a if toward_b else media.expect_b
            expect(*anchored.peer)
        return anchored.body

    def on_in_dialog(self, tx: TxKey, request: Request, source: Address, now: float) -> bool:
        """A request inside a call; False when it matches no dialog (the caller answers 481)."""
        entry = self._by_dialog.get((request.call_id, request.to.tag or ""))
        if entry is None:
            return False
        call, leg = entry
        if leg.dialog is None:
            return False
        try:
            leg.dialog.receive_request(request)
        except RemoteProtocolError as exc:
            self._ep.send_response(
                tx, make_response(request, exc.status, exc.reason, to_tag=leg.local_tag)
            )
            return True
        other = self._other(call, leg)
        if request.method == "BYE":
            self._ep.send_response(tx, make_response(request, 200, to_tag=leg.local_tag))
            by = "caller" if leg is call.a else "callee"
            if call.state == "answered":
                if other is not None:
                    self._send_bye(call, other)
                self._end(call, now, by, "normal_clearing", None)
            elif leg is call.a and call.state == "ringing":
                self._fail_call(call, 487, "Request Terminated", now, "caller", "cancelled")
            return True
        if other is None or other.dialog is None or call.state != "answered":
            self._ep.send_response(
                tx, make_response(request, 491 if request.method == "INVITE" else 403,
                                  to_tag=leg.local_tag)
            )  # fmt: skip
            return True
        headers = [(n, v) for n, v in request.headers if n.lower() in RELAYED_HEADERS]
        try:
            relayed = other.dialog.new_request(
                request.method,
                via=self._ep.via(other.address.transport, other.address),
                contact=self._ep.contact(other.address.transport, other.address),
                headers=headers,
                body=self._anchor(
                    call, request.headers, request.body, toward_b=leg is call.a,
                    dest=other.address,
                ),
            )  # fmt: skip
        except LocalProtocolError:
            self._ep.send_response(tx, make_response(request, 481, to_tag=leg.local_tag))
            return True
        client_tx = self._ep.send_request(relayed, other.address)
        self._by_client_tx[client_tx] = Relay(call, leg, tx, request)
        return True

    def _relay_response(self, relay: Relay, response: Response) -> None:
        """Pass the far side's answer to a relayed request back to the side that asked."""
        leg = relay.from_leg
        status = response.status
        if status == 100:
            return
        if 200 <= status < 300 and response.cseq.method == "INVITE":
            other = self._other(relay.call, leg)
            if other is not None and other.dialog is not None:
                other.dialog.update_from_response(response)
                ack = other.dialog.ack_for(
                    _with_cseq(relay, response),
                    response,
                    via=self._ep.via(other.address.transport, other.address),
                )
                self._ep.send_ack(ack, other.address)
        headers = [(n, v) for n, v in response.headers if n.lower() in RELAYED_HEADERS]
        if response.cseq.method in ("INVITE", "UPDATE") and 200 <= status < 300:
            headers.append(("Contact", self._ep.contact(leg.address.transport, leg.address)))
        body = self._anchor(
            relay.call, response.headers, response.body, toward_b=leg is not relay.call.a,
            dest=leg.address,
        )  # fmt: skip
        answer = make_response(
            relay.request, status, response.reason, to_tag=leg.local_tag, headers=headers,
            body=body,
        )  # fmt: skip
        self._ep.send_response(relay.server_tx, answer)

    # --- timers --------------------------------------------------------------------------------

    def timer_fired(self, key: Hashable, now: float) -> None:
        if not isinstance(key, CallTimer):
            return
        call = self._calls.get(key.call_ref)
        if call is None or call.state != "ringing":
            return
        if key.name == "ring":
            log.info("call %s: no answer", call.ref)
            self._fail_call(call, 480, "No Answer", now, "system", "no_answer")

    # --- endings -------------------------------------------------------------------------------

    def _fail_call(
        self, call: Call, status: int, reason: str, now: float, by: str, cause: str
    ) -> None:
        """End a call that was never answered, answering the caller `status`."""
        for fork in call.forks:
            if fork.final is None:
                self._cancel_fork(fork)
        a = call.a
        if a.tx is not None and a.final is None:
            a.final = status
            self._ep.send_response(
                a.tx, make_response(a.invite, status, reason, to_tag=a.local_tag)
            )
        self._end(call, now, by, cause, status)

    def _cancel_fork(self, leg: Leg) -> None:
        if leg.cancelled or leg.final is not None:
            return
        leg.cancelled = True
        cancel = cancel_for(leg.invite)
        self._ep.send_request(cancel, leg.address)

    def _send_bye(self, call: Call, leg: Leg) -> None:
        if leg.dialog is None or leg.dialog.state is DialogState.TERMINATED:
            return
        if leg.held_2xx is not None:
            self._ack_b(leg, leg.held_2xx, None)
            leg.held_2xx = None
        bye = leg.dialog.new_request("BYE", via=self._ep.via(leg.address.transport, leg.address))
        leg.dialog.terminate()
        self._ep.send_request(bye, leg.address)

    def _hang_up_both(
        self, call: Call, now: float, by: str, cause: str, status: int | None
    ) -> None:
        for leg in (call.a, call.b):
            if leg is not None:
                self._send_bye(call, leg)
        self._end(call, now, by, cause, status)

    def _end(self, call: Call, now: float, by: str, cause: str, status: int | None) -> None:
        if call.state == "ended":
            return
        self._move(call, cause, "ended")
        if call.media is not None:
            call.media.close()
        self._ep.cancel_timer(CallTimer(call.ref, "ring"))
        self._calls.pop(call.ref, None)
        if call.a.tx is not None:
            self._by_server_tx.pop(call.a.tx, None)
        for leg in (call.a, *call.forks):
            # A fork still ringing keeps its entry until its final answer: a 2xx that crossed
            # our CANCEL must still be ACKed and hung up (RFC 3261 §9.1, §15).
            if leg.tx is not None and not (leg.final is None and leg.cancelled):
                self._by_client_tx.pop(leg.tx, None)
            if leg.dialog is not None:
                self._by_dialog.pop((leg.dialog.call_id, leg.local_tag), None)
        answered = call.answered_at
        billable = int(now - answered) if answered is not None else 0
        self._ep.write_cdr(
            CdrRec(
                tenant_id=call.tenant.id,
                call_id=call.a.invite.call_id,
                from_number=call.from_number,
                to_number=call.to_number,
                direction=call.direction,
                trunk_id=call.trunk_id,
                started_at=call.started_at,
                answered_at=answered,
                ended_at=now,
                billable_s=max(billable, 0),
                hangup_cause=cause,
                hangup_status=status,
                hangup_by=by,
            )
        )

    def _move(self, call: Call, event: str, new: str) -> None:
        log.info("call %s: %s -> %s -> %s", call.ref, call.state, event, new)
        call.state = new

    @staticmethod
    def _other(call: Call, leg: Leg) -> Leg | None:
        return call.b if leg is call.a else call.a


def _is_sdp(headers: Headers, body: bytes) -> bool:
    """RFC 3261 §20.15: a body is SDP when its Content-Type says so."""
    content_type = headers.get("Content-Type") or ""
    return bool(body) and content_type.split(";", 1)[0].strip().lower() == "application/sdp"


def _copy_relayed(source: Headers, target: Headers) -> None:
    for name, value in source:
        if name.lower() in RELAYED_HEADERS:
            target.add(name, value)


def _with_cseq(relay: Relay, response: Response) -> Request:
    """The re-INVITE we sent, as far as `Dialog.ack_for` needs it: its CSeq number."""
    headers = Headers()
    headers.add("CSeq", f"{response.cseq.seq} INVITE")
    return Request("INVITE", "sip:invalid", headers)


def _best_failure(failures: list[Response]) -> Response:
    """RFC 3261 §16.7 step 6, simplified: a 6xx, else busy, else the lowest class."""
    for response in failures:
        if response.status >= 600:
            return response
    for response in failures:
        if response.status in (486, 600):
            return response
    return min(failures, key=lambda r: (r.status // 100, r.status))


def _cause(status: int) -> str:
    """The CDR's hang-up cause for a final failure status."""
    if status in (486, 600):
        return "busy"
    if status in (408, 480):
        return "no_answer"
    if status in (404, 484, 604):
        return "not_found"
    if status in (403, 603):
        return "rejected"
    return "failed"
