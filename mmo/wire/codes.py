"""
Stable error codes of the client protocol.

A code never changes meaning once published; new codes may be added.  The
table in C{docs/protocol.md} lists the same codes: keep them together.
"""

from __future__ import annotations

#: The body is not a msgpack map with a string "t" (each key once), or a frame is empty.
BAD_FRAME = "bad_frame"
#: The length prefix announces more than the negotiated maximum.
FRAME_TOO_LARGE = "frame_too_large"
#: A frame other than "hello" arrived before the handshake.
HANDSHAKE_REQUIRED = "handshake_required"
#: The handshake did not complete in time.
HANDSHAKE_TIMEOUT = "handshake_timeout"
#: No protocol version offered by the client is spoken by the server.
UNSUPPORTED_VERSION = "unsupported_version"
#: Nothing arrived from the client for the idle timeout.
IDLE_TIMEOUT = "idle_timeout"
#: The message type is not known to the server.
UNKNOWN_TYPE = "unknown_type"
#: A field is missing, of the wrong type or out of range.
BAD_REQUEST = "bad_request"
#: The server failed while handling the request; the connection stays usable.
INTERNAL = "internal"
#: The session ticket must be presented ('auth') first.
AUTH_REQUIRED = "auth_required"
#: Wrong name or password, or a locked account (deliberately alike).
LOGIN_FAILED = "login_failed"
#: The account name is taken (names are unique without regard to case).
NAME_TAKEN = "name_taken"
#: The name breaks the naming rules.
BAD_NAME = "bad_name"
#: The password breaks the password policy.
WEAK_PASSWORD = "weak_password"
#: The account is banned.
BANNED = "banned"
#: No such realm.
UNKNOWN_REALM = "unknown_realm"
#: No gateway of the realm is up.
NO_GATEWAY = "no_gateway"
#: Too many attempts from this address; wait.
THROTTLED = "throttled"
#: The server is too busy (password hashing queue full); retry shortly.
BUSY = "busy"
#: The session ticket is forged, expired, used, revoked or of another realm.
TICKET_REFUSED = "ticket_refused"
#: The refresh token is unknown, spent, revoked, expired or of another device.
REFRESH_REFUSED = "refresh_refused"
#: The account is online already and the deployment refuses a second session.
ALREADY_ONLINE = "already_online"

#: The client sends faster than its flood limit; the message was dropped.
FLOODING = "flooding"
#: A resume token is unknown, expired or already used.
RESUME_REFUSED = "resume_refused"
#: The player addressed is not online.
PLAYER_OFFLINE = "player_offline"
#: The player is muted in chat.
MUTED = "muted"
#: No such room, character or channel.
NOT_FOUND = "not_found"
#: The room is full.
ROOM_FULL = "room_full"
#: The room's password is wrong.
WRONG_PASSWORD = "wrong_password"
#: The player may not do this (not the owner, not a moderator, not a member).
NOT_ALLOWED = "not_allowed"
#: The account has as many characters as it may.
CHARACTER_LIMIT = "character_limit"
#: The player lacks the currency or the items (the economy).
INSUFFICIENT_FUNDS = "insufficient_funds"
#: An inventory would pass its limit (the economy).
NO_ROOM = "no_room"
#: The vendor's limited stock is too low (the economy).
OUT_OF_STOCK = "out_of_stock"
#: A confirmation of a version that is not the current one (a trade).
STALE_VERSION = "stale_version"
#: The player, or the one addressed, has an open trade already.
IN_TRADE = "in_trade"
#: The service that handles this message, or a backend it needs (the store,
#: the bus), is not reachable now; retry after the error's C{retry_after}.
UNAVAILABLE = "unavailable"

#: Seconds an C{unavailable} error tells the client to wait before it
#: retries (C{retry_after}): about what a reconnection to a restarted Redis
#: or service takes.
UNAVAILABLE_RETRY_AFTER = 1.0

#: Goodbye code: the server is shutting down.
SHUTDOWN = "shutdown"
#: Goodbye code: the account logged in elsewhere (the newer session wins).
REPLACED = "replaced"
#: Goodbye code: the account logged out.
LOGGED_OUT = "logged_out"
#: Goodbye code: the client kept flooding.
FLOOD = "flood"
#: Goodbye code: the client stopped answering heartbeats.
HEARTBEAT_TIMEOUT = "heartbeat_timeout"
#: Goodbye code: the session was resumed on another connection.
RESUMED_ELSEWHERE = "resumed_elsewhere"
#: Goodbye code: the gateway is draining; resume the session on the gateway
#: named by the "session.move" frame before it (and by the goodbye itself).
MOVED = "moved"
#: Goodbye code: an operator ended the session.
KICKED = "kicked"
#: Goodbye code: the client left more than [listeners] max_unsent bytes
#: unread; the session is kept for a resume, as after any drop.
SLOW_READER = "slow_reader"

#: Every code, with what it means (rendered into the protocol documentation).
DESCRIPTIONS = {
    BAD_FRAME: "malformed frame body (not msgpack, not a map, a key twice, no string 't'); fatal",
    FRAME_TOO_LARGE: "frame length above the negotiated maximum; fatal",
    HANDSHAKE_REQUIRED: "a frame other than 'hello' before the handshake; fatal",
    HANDSHAKE_TIMEOUT: "no handshake within the handshake timeout; fatal",
    UNSUPPORTED_VERSION: "no common protocol version; fatal",
    IDLE_TIMEOUT: "nothing received within the idle timeout; fatal",
    UNKNOWN_TYPE: "the message type is not known; the connection stays open",
    BAD_REQUEST: "a field is missing, of the wrong type or out of range; stays open",
    INTERNAL: "the server failed handling the request; stays open",
    AUTH_REQUIRED: "the message needs an admitted session; send 'auth' first; stays open",
    LOGIN_FAILED: "wrong name or password, or the account is locked; stays open",
    NAME_TAKEN: "the account name is taken; stays open",
    BAD_NAME: "the name breaks the naming rules; stays open",
    WEAK_PASSWORD: "the password breaks the password policy; stays open",
    BANNED: "the account is banned; stays open",
    UNKNOWN_REALM: "no such realm; stays open",
    NO_GATEWAY: "no gateway of the realm is up; retry later; stays open",
    THROTTLED: "too many attempts from this address; wait; stays open",
    BUSY: "the server is too busy; retry shortly; stays open",
    TICKET_REFUSED: "the ticket is forged, expired, used, revoked or of another realm",
    REFRESH_REFUSED: "the refresh token is unknown, spent, revoked, expired or of "
    "another device; log in with the password; stays open",
    ALREADY_ONLINE: "the account is online and second sessions are refused; stays open",
    FLOODING: "sent faster than the flood limit; the message was dropped; stays open",
    RESUME_REFUSED: "the resume token is unknown, expired or used; stays open",
    PLAYER_OFFLINE: "the player addressed is not online; stays open",
    MUTED: "the player is muted in chat; stays open",
    NOT_FOUND: "no such room, character or channel; stays open",
    ROOM_FULL: "the room is full; stays open",
    WRONG_PASSWORD: "the room's password is wrong; stays open",
    NOT_ALLOWED: "not allowed (not the owner, a moderator or a member); stays open",
    CHARACTER_LIMIT: "the account has as many characters as it may; stays open",
    INSUFFICIENT_FUNDS: "the player lacks the currency or the items; stays open",
    NO_ROOM: "an inventory would pass its limit; stays open",
    OUT_OF_STOCK: "the vendor's limited stock is too low; stays open",
    STALE_VERSION: "the trade's offers changed since the version confirmed; stays open",
    IN_TRADE: "the player, or the one addressed, has an open trade; stays open",
    UNAVAILABLE: "the service for this message is not reachable now; retry after "
    "'retry_after' seconds; stays open",
    MOVED: "goodbye: the gateway is draining; resume on the gateway named in 'session.move'",
    KICKED: "goodbye: an operator ended the session; it cannot be resumed",
    SLOW_READER: "goodbye: the client left too much unread; the session may be resumed",
}


class WireError(Exception):
    """
    A protocol error to report to the peer as an error frame.

    @ivar code: One of the stable codes above.
    @ivar message: Human-readable detail.
    @ivar fatal: Whether the connection is closed after the error frame,
        because the stream can no longer be trusted.
    @ivar retry_after: Seconds the client should wait before it sends the
        request again, or C{None}: every C{unavailable} error has one
        (L{UNAVAILABLE_RETRY_AFTER} unless given), so that whichever way
        it came (a service across the RPC link, too) the client is told.
    """

    def __init__(
        self, code: str, message: str, fatal: bool = False, retry_after: float | None = None
    ):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.fatal = fatal
        if retry_after is None and code == UNAVAILABLE:
            retry_after = UNAVAILABLE_RETRY_AFTER
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
