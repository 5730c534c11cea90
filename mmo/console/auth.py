"""
Who may use the admin console: holders of the admin credential only.

The way in is a one-time login link: C{mmo-admin console}, which holds the
deployment's C{admin} certificate and reaches the manager over the admin
endpoint (mutual TLS, that certificate only), asks the manager for one
(L{ConsoleAuth.issue_link}).  The link carries a random token, good once
and for C{[manager] console_link} seconds.  Opening it gives the browser a
session cookie (C{Secure}, C{HttpOnly}, C{SameSite=Strict}, lasting
C{[manager] console_session} seconds) and the session a CSRF token, which
every action sends back in a header.  C{docs/console.md} says why this is
as strong as the certificate.

Tokens and session ids are kept only as their SHA-256: what the manager's
memory holds cannot be replayed as a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

#: The console's session cookie.
COOKIE = b"mmo-console"

#: The header every action carries its session's CSRF token in.
CSRF_HEADER = b"x-csrf-token"

#: Login links not yet used that are kept; issuing one more forgets the oldest.
LINKS_MAX = 16

#: Sessions kept at once; a login past it ends the oldest.
SESSIONS_MAX = 64

#: Random bytes in a token, a session id or a CSRF token.
TOKEN_BYTES = 32


def _digest(secret: str | bytes) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8", "replace")
    return hashlib.sha256(secret).digest()


@dataclass(frozen=True)
class ConsoleSession:
    """
    One browser logged in to the console.

    @ivar csrf: The token its actions must carry in L{CSRF_HEADER}.
    @ivar expires: When it ends (the clock's seconds).
    """

    csrf: str
    expires: float


class ConsoleAuth:
    """
    The console's login links and sessions, timed by C{clock}.

    @ivar link_lifetime: Seconds a login link may wait to be opened.
    @ivar session_lifetime: Seconds a session lasts after its login.
    """

    def __init__(self, clock, link_lifetime: float = 60.0, session_lifetime: float = 3600.0):
        self.clock = clock
        self.link_lifetime = link_lifetime
        self.session_lifetime = session_lifetime
        self._links: OrderedDict[bytes, float] = OrderedDict()
        self._sessions: OrderedDict[bytes, ConsoleSession] = OrderedDict()

    @classmethod
    def from_config(cls, config, clock) -> ConsoleAuth:
        """The auth of the console C{config}'s C{[manager]} times."""
        return cls(clock, config.manager.console_link, config.manager.console_session)

    # -- login links ------------------------------------------------------------------

    def issue_link(self) -> str:
        """
        A new login token, good once, for L{link_lifetime} seconds (what
        the manager's C{console} admin command hands C{mmo-admin}).
        """
        self._forget_expired()
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._links[_digest(token)] = self.clock.seconds() + self.link_lifetime
        while len(self._links) > LINKS_MAX:
            self._links.popitem(last=False)
        return token

    def log_in(self, token) -> tuple[str, ConsoleSession] | None:
        """
        Spend C{token}: a new session and its id (the cookie's value), or
        C{None} if the token is unknown, used already or expired.
        """
        if not isinstance(token, str | bytes) or not token:
            return None
        expires = self._links.pop(_digest(token), None)
        if expires is None or expires <= self.clock.seconds():
            return None
        self._forget_expired()
        ident = secrets.token_urlsafe(TOKEN_BYTES)
        session = ConsoleSession(
            csrf=secrets.token_urlsafe(TOKEN_BYTES),
            expires=self.clock.seconds() + self.session_lifetime,
        )
        self._sessions[_digest(ident)] = session
        while len(self._sessions) > SESSIONS_MAX:
            self._sessions.popitem(last=False)
        return ident, session

    # -- requests ---------------------------------------------------------------------

    def session(self, request) -> ConsoleSession | None:
        """The live session whose cookie C{request} carries, if any."""
        ident = request.getCookie(COOKIE)
        if not ident:
            return None
        key = _digest(ident)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires <= self.clock.seconds():
            del self._sessions[key]
            return None
        return session

    def authorized(self, request) -> bool:
        """Whether C{request} comes from a logged-in console (its cookie)."""
        return self.session(request) is not None

    def may_act(self, request) -> bool:
        """
        Whether C{request} may change something: a logged-in console's, and
        carrying that session's CSRF token (which a page of another site
        cannot read, so cannot send).
        """
        session = self.session(request)
        sent = request.getHeader(CSRF_HEADER)
        if session is None or not sent:
            return False
        return hmac.compare_digest(sent, session.csrf.encode())

    def set_cookie(self, request, ident: str) -> None:
        """Give C{request}'s browser the cookie of session C{ident}."""
        request.addCookie(
            COOKIE,
            ident.encode(),
            path=b"/",
            max_age=str(int(self.session_lifetime)).encode(),
            secure=True,
            httpOnly=True,
            sameSite="strict",
        )

    def log_out(self, request) -> None:
        """End the session of C{request}'s cookie, and clear the cookie."""
        ident = request.getCookie(COOKIE)
        if ident:
            self._sessions.pop(_digest(ident), None)
        request.addCookie(
            COOKIE, b"", path=b"/", max_age=b"0", secure=True, httpOnly=True, sameSite="strict"
        )

    def _forget_expired(self) -> None:
        now = self.clock.seconds()
        for table in (self._links, self._sessions):
            for key in [k for k, v in table.items() if _expiry(v) <= now]:
                del table[key]


def _expiry(value) -> float:
    return value.expires if isinstance(value, ConsoleSession) else value
