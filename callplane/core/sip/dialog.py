"""SIP dialogs (RFC 3261 §12), and the requests built outside them: CANCEL (§9.1) and the ACK
for a non-2xx final response (§17.1.1.3).

A `Dialog` is plain data plus the rules of §12.2: building in-dialog requests from the route set and
remote target, checking the remote CSeq, refreshing the target, and moving early -> confirmed ->
terminated. It sends nothing: the caller hands the requests it builds to the transaction layer.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from callplane.core.sip.errors import LocalProtocolError, RemoteProtocolError
from callplane.core.sip.headers import Headers, NameAddr, Via, parse_name_addr
from callplane.core.sip.message import Request, Response
from callplane.core.sip.uri import SipUri

MAX_FORWARDS = "70"  # RFC 3261 §8.1.1.6: the recommended initial Max-Forwards
BRANCH_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7: the magic cookie every branch starts with
BRANCH_TOKEN_BYTES = 12  # 96 random bits: unique in time and space (§8.1.1.7), cheap to make
TAG_TOKEN_BYTES = 8  # 64 random bits; RFC 3261 §19.3 asks for at least 32
# RFC 3261 §12.2 (INVITE), RFC 3311 §5.1 (UPDATE), RFC 6665 §4.1.2 (SUBSCRIBE and NOTIFY): requests
# whose Contact replaces the remote target.
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY"})
# RFC 3261 §12.2.1.2: a 481 or 408 to an in-dialog request ends the dialog.
DIALOG_ENDING_STATUSES = frozenset({408, 481})


class DialogState(enum.Enum):
    """RFC 3261 §12: a dialog is early (1xx with a tag), confirmed (2xx) or terminated."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


def new_branch() -> str:
    """A fresh Via branch, RFC 3261 §8.1.1.7 (randomness, not the clock)."""
    return BRANCH_COOKIE + secrets.token_hex(BRANCH_TOKEN_BYTES)


def new_tag() -> str:
    """A fresh From/To tag, RFC 3261 §19.3."""
    return secrets.token_hex(TAG_TOKEN_BYTES)


@dataclass(slots=True)
class Dialog:
    """One dialog's state, RFC 3261 §12.1: identity, route set, remote target and CSeq numbers.

    `local_uri` and `remote_uri` are the From/To identities (their tag parameters are ignored:
    the tags are `local_tag` and `remote_tag`). `uac` says which side created the dialog.
    """

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: SipUri
    route_set: list[str]
    local_seq: int
    remote_seq: int | None
    secure: bool
    state: DialogState
    uac: bool = field(default=True)

    @property
    def id(self) -> tuple[str, str, str | None]:
        """The dialog ID, RFC 3261 §12: (Call-ID, local tag, remote tag)."""
        return (self.call_id, self.local_tag, self.remote_tag)

    # --- requests we send ----------------------------------------------------------------------

    def new_request(
        self,
        method: str,
        *,
        via: Via | str,
        contact: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Request:
        """A request within the dialog, RFC 3261 §12.2.1.1; CSeq is the next local number.

        ACK and CANCEL are not built here: use `ack_for` and `cancel_for`.
        """
        if method in ("ACK", "CANCEL"):
            raise LocalProtocolError(f"build {method} with ack_for or cancel_for, not new_request")
        if self.state is DialogState.TERMINATED:
            raise LocalProtocolError(f"cannot send {method} in a terminated dialog")
        self.local_seq += 1
        return self._build(method, self.local_seq, self.remote_tag, via, contact, headers, body)

    def ack_for(self, invite: Request, response_2xx: Response, *, via: Via | str) -> Request:
        """The ACK for a 2xx to `invite`, RFC 3261 §13.2.2.4: the INVITE's CSeq number, a new
        branch (the caller's `via`), the route set and remote target of the dialog."""
        if not 200 <= response_2xx.status < 300:
            raise LocalProtocolError(f"ack_for takes a 2xx, not {response_2xx.status}")
        extra = [
            (name, value)
            for name, value in invite.headers
            if name.lower() in ("authorization", "proxy-authorization")
        ]
        return self._build("ACK", invite.cseq.seq, response_2xx.to.tag, via, None, extra, b"")

    def _build(
        self,
        method: str,
        seq: int,
        remote_tag: str | None,
        via: Via | str,
        contact: str | None,
        extra: Iterable[tuple[str, str]],
        body: bytes,
    ) -> Request:
        uri, routes = self._target_and_routes()
        headers = Headers()
        headers.add("Via", str(via))
        headers.add("Max-Forwards", MAX_FORWARDS)
        for route in routes:
            headers.add("Route", route)
        headers.add("From", str(self.local_uri.with_tag(self.local_tag)))
        to = self.remote_uri.with_tag(remote_tag) if remote_tag else _without_tag(self.remote_uri)
        headers.add("To", str(to))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{seq} {method}")
        if contact is not None:
            headers.add("Contact", contact)
        for name, value in extra:
            headers.add(name, value)
        headers.add("Content-Length", str(len(body)))
        return Request(method, uri, headers, body)

    def _target_and_routes(self) -> tuple[str, list[str]]:
        """Request-URI and Route headers from the route set, RFC 3261 §12.2.1.1."""
        target = str(self.remote_target)
        if not self.route_set:
            return target, []
        first = parse_name_addr(self.route_set[0]).uri
        if first.has_param("lr"):
            return target, list(self.route_set)
        # Strict routing (RFC 2543 proxies): the first route becomes the Request-URI, stripped of
        # what a Request-URI may not carry (RFC 3261 §12.2.1.1, §19.1.1).
        stripped = first.with_(params=(), headers=())
        return str(stripped), [*self.route_set[1:], f"<{target}>"]

    # --- what we receive -----------------------------------------------------------------------

    def receive_request(self, request: Request) -> None:
        """Check and absorb a request within the dialog, RFC 3261 §12.2.2.

        Raises RemoteProtocolError("CSeq out of order", 500) when its CSeq is not above the last
        one; ACK and CANCEL reuse their INVITE's number and are exempt. Target-refresh requests
        with a Contact replace the remote target; a BYE terminates the dialog (§15.1.2).
        """
        method = request.method
        seq = request.cseq.seq
        if method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and seq <= self.remote_seq:
                raise RemoteProtocolError("CSeq out of order", 500)
            self.remote_seq = seq
        if method in TARGET_REFRESH_METHODS:
            self._refresh_target(request)
        if method == "BYE":
            self.state = DialogState.TERMINATED

    def update_from_response(self, response: Response) -> None:
        """Apply a response to a request this side sent (RFC 3261 §12.1.2, §12.2.1.2, §13.2.2.4).

        A 2xx to INVITE confirms an early dialog (and for the UAC recomputes the route set from
        its Record-Route); a 2xx to a target-refresh request, or a reliable 1xx to the initial
        INVITE, replaces the remote target; 408/481 and a non-2xx final response to the initial
        INVITE of an early dialog terminate it.
        """
        status = response.status
        method = response.cseq.method
        tag = response.to.tag
        if self.remote_tag is not None and tag is not None and tag != self.remote_tag:
            raise LocalProtocolError(f"response with To tag {tag} belongs to another dialog")
        if status in DIALOG_ENDING_STATUSES:
            self.state = DialogState.TERMINATED
            return
        if status >= 300:
            if method == "INVITE" and self.state is DialogState.EARLY:
                self.state = DialogState.TERMINATED
            return
        if self.remote_tag is None:
            self.remote_tag = tag
        if method == "INVITE" and self.state is DialogState.EARLY and status < 300:
            if status >= 200:
                self.state = DialogState.CONFIRMED
                if self.uac:
                    self.route_set = _record_routes(response)[::-1]
            self._refresh_target(response)
        elif status >= 200 and method in TARGET_REFRESH_METHODS:
            self._refresh_target(response)

    def confirm(self) -> None:
        """The UAS sent its 2xx: an early dialog is now confirmed (RFC 3261 §12.1.1)."""
        if self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED

    def terminate(self) -> None:
        """End the dialog (BYE sent or answered, RFC 3261 §15)."""
        self.state = DialogState.TERMINATED

    def _refresh_target(self, message: Request | Response) -> None:
        contact = _first_contact(message)
        if contact is not None:
            self.remote_target = contact


# --- creating dialogs --------------------------------------------------------------------------


def dialog_as_uac(request: Request, response: Response) -> Dialog:
    """The dialog a UAC gets from a 1xx (with To tag) or 2xx to its request, RFC 3261 §12.1.2.

    The route set is the response's Record-Route in reverse order.
    """
    status = response.status
    if not 101 <= status < 300:
        raise LocalProtocolError(f"a {status} response creates no dialog")
    local_tag = request.from_.tag
    if local_tag is None:
        raise LocalProtocolError("the request has no From tag")
    remote_tag = response.to.tag
    if remote_tag is None and status >= 200:
        raise RemoteProtocolError("a 2xx to a dialog-creating request without a To tag")
    target = _first_contact(response)
    if target is None:
        raise RemoteProtocolError("a dialog-creating response without a Contact")
    return Dialog(
        call_id=request.call_id,
        local_tag=local_tag,
        remote_tag=remote_tag,
        local_uri=request.from_,
        remote_uri=request.to,
        remote_target=target,
        route_set=_record_routes(response)[::-1],
        local_seq=request.cseq.seq,
        remote_seq=None,
        secure=_is_sips(request.uri),
        state=DialogState.CONFIRMED if status >= 200 else DialogState.EARLY,
        uac=True,
    )


def dialog_as_uas(request: Request, response: Response) -> Dialog:
    """The dialog a UAS gets by answering `request` with `response`, RFC 3261 §12.1.1.

    The route set is the request's Record-Route in order; the local CSeq starts empty (0).
    """
    status = response.status
    if not 101 <= status < 300:
        raise LocalProtocolError(f"a {status} response creates no dialog")
    local_tag = response.to.tag
    if local_tag is None:
        raise LocalProtocolError("the response needs a To tag to create a dialog")
    target = _first_contact(request)
    if target is None:
        raise RemoteProtocolError("a dialog-creating request without a Contact")
    return Dialog(
        call_id=request.call_id,
        local_tag=local_tag,
        remote_tag=request.from_.tag,
        local_uri=request.to,
        remote_uri=request.from_,
        remote_target=target,
        route_set=_record_routes(request),
        local_seq=0,
        remote_seq=request.cseq.seq,
        secure=_is_sips(request.uri),
        state=DialogState.CONFIRMED if status >= 200 else DialogState.EARLY,
        uac=False,
    )


# --- requests outside a dialog -----------------------------------------------------------------


def cancel_for(invite: Request) -> Request:
    """The CANCEL for `invite`, RFC 3261 §9.1: same Request-URI, Call-ID, To, From and CSeq
    number, only the top Via (same branch), and the same Route headers."""
    return _copy_for("CANCEL", invite, None)


def ack_for_non2xx(invite: Request, response: Response) -> Request:
    """The ACK for a 300-699 response, RFC 3261 §17.1.1.3: the INVITE's branch and Route, the To
    of the response."""
    return _copy_for("ACK", invite, response)


def _copy_for(method: str, invite: Request, response: Response | None) -> Request:
    source = invite.headers
    headers = Headers()
    headers.add("Via", source.values("Via")[0])
    headers.add("Max-Forwards", MAX_FORWARDS)
    for value in source.get_all("Route"):
        headers.add("Route", value)
    headers.add("From", source.get("From") or "")
    to = response.headers.get("To") if response is not None else source.get("To")
    headers.add("To", to or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.seq} {method}")
    headers.add("Content-Length", "0")
    return Request(method, invite.uri, headers)


def _without_tag(addr: NameAddr) -> NameAddr:
    return NameAddr(addr.display, addr.uri, tuple(p for p in addr.params if p[0].lower() != "tag"))


def _record_routes(message: Request | Response) -> list[str]:
    return list(message.headers.values("Record-Route"))


def _first_contact(message: Request | Response) -> SipUri | None:
    contacts = message.contacts
    if contacts == "*" or not contacts:
        return None
    return contacts[0].uri


def _is_sips(uri: str) -> bool:
    return uri[:5].lower() == "sips:"
