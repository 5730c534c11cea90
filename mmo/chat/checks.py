"""
The fields of chat requests, checked: each function returns the field's
value as the service uses it, or raises C{bad_request} saying what is
wrong.  The limits come from the caller (the service's class attributes and
C{[chat]}), so that a subclass of the service may change them.
"""

from __future__ import annotations

import re
import unicodedata

from mmo.chat.channels import CHANNEL_KINDS, ZONE, world_channel, zone_channel
from mmo.wire import codes
from mmo.wire.codes import WireError

#: Characters chat does not carry (C{docs/chat.md}, "Text"): they change
#: how the rest of a line or of the screen is shown, not what the text says.
#: C0 and C1 controls and DEL (NUL; ESC, which starts terminal escape
#: sequences; CR, LF and tab, which would start a line that looks like
#: another player's or the server's); the line and paragraph separators;
#: the bidirectional embeddings, overrides and isolates, which reorder what
#: follows them, past the end of the message; the deprecated format
#: controls; interlinear annotations.  The bidirectional marks (LRM, RLM,
#: ALM), the joiners of emoji and scripts (ZWJ, ZWNJ), variation selectors
#: and tag characters stay: right-to-left writing and emoji need them, and
#: shown in an isolate, as clients are asked to, they change nothing beyond
#: the message.
UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u206f\ufff9-\ufffb]")


def showable(value: str, field: str) -> str:
    """C{value} if it holds no L{UNSHOWABLE} character, else C{bad_request} naming the first."""
    found = UNSHOWABLE.search(value)
    if found is not None:
        char = found.group()
        name = unicodedata.name(char, "a control character")
        raise WireError(
            codes.BAD_REQUEST,
            f"{field!r} holds U+{ord(char):04X} ({name}) at {found.start()}, which cannot be "
            "shown safely: chat carries no control, line break or bidirectional override",
        )
    return value


def channel_id(message: dict, realm: str, party_name_max: int, zone: str | None = None) -> str:
    """
    The channel a request names, as an id: C{"world"} is C{realm}'s,
    C{"zone"} that of C{zone} (the caller's; C{not_allowed} if it is in
    none).
    """
    raw = message.get("channel")
    if not isinstance(raw, str) or not raw:
        raise WireError(codes.BAD_REQUEST, "'channel' must be a non-empty string")
    if raw == "world":
        return world_channel(realm)
    if raw == ZONE:
        if zone is None:
            raise WireError(
                codes.NOT_ALLOWED,
                "you are in no zone: the zone channel is joined with zone.enter",
            )
        return zone_channel(realm, zone)
    kind, colon, name = raw.partition(":")
    if not colon or not name or kind not in CHANNEL_KINDS:
        raise WireError(
            codes.BAD_REQUEST,
            f"no channel {raw!r}: channels are world, world:REALM, zone, room:ID and party:NAME",
        )
    if kind == "party":
        name = name.casefold()
        if len(name) > party_name_max or not all(c.isalnum() or c in "-_" for c in name):
            raise WireError(
                codes.BAD_REQUEST,
                f"a party channel name has 1 to {party_name_max} letters, digits, '-' or '_'",
            )
        return f"party:{name}"
    return raw


def text(message: dict, max_length: int) -> str:
    """
    The C{text} of a message: not only white space, at most C{max_length}
    long, nothing L{UNSHOWABLE}.
    """
    value = message.get("text")
    if not isinstance(value, str) or not value.strip():
        raise WireError(codes.BAD_REQUEST, "'text' must be a non-empty string")
    if len(value) > max_length:
        raise WireError(
            codes.BAD_REQUEST,
            f"the message is {len(value)} characters long; at most {max_length} are allowed",
        )
    return showable(value, "text")


def player_name(message: dict, name_max: int, field: str = "name") -> str:
    """A player's name in C{field}, 1 to C{name_max} characters."""
    name = message.get(field)
    if not isinstance(name, str) or not name or len(name) > name_max:
        raise WireError(codes.BAD_REQUEST, f"{field!r} must be a player's name (1 to {name_max})")
    return name


def history_limit(message: dict, default: int) -> int:
    """How many messages C{chat.history} asks for (C{limit}, else C{default})."""
    limit = message.get("limit", default)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise WireError(codes.BAD_REQUEST, "'limit' must be an integer of at least 0")
    return limit


def mute_seconds(message: dict, default: float, most: float) -> float:
    """The length of a mute, seconds: above 0, at most C{most}."""
    seconds = message.get("seconds", default)
    if (
        not isinstance(seconds, (int, float))
        or isinstance(seconds, bool)
        or not 0 < seconds <= most
    ):
        raise WireError(codes.BAD_REQUEST, f"'seconds' must be a number above 0, at most {most:g}")
    return seconds


def mute_reason(message: dict, most: int) -> str:
    """
    The reason of a mute (shown to the muted player), at most C{most}
    characters, nothing L{UNSHOWABLE} (empty if none given).
    """
    reason = message.get("reason", "")
    if not isinstance(reason, str) or len(reason) > most:
        raise WireError(codes.BAD_REQUEST, f"'reason' must be a string of at most {most}")
    return showable(reason, "reason")
