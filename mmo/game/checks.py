"""
The fields of client requests every service checks alike: each check
returns the field's value as the service uses it, or raises
C{bad_request} saying what is wrong.  A service's own checks build on
these (L{mmo.ladder.checks}, L{mmo.economy.views}).
"""

from __future__ import annotations

from mmo.wire.codes import BAD_REQUEST, WireError

#: Longest name a client may give where a service takes a short one.
MAX_NAME = 32


def string(message: dict, key: str, limit: int = MAX_NAME) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise WireError(BAD_REQUEST, f"{key!r} must be a string of 1 to {limit} characters")
    return value


def boolean(message: dict, key: str) -> bool:
    value = message.get(key, False)
    if not isinstance(value, bool):
        raise WireError(BAD_REQUEST, f"{key!r} must be true or false")
    return value


def integer(message: dict, key: str, default: int, low: int, high: int) -> int:
    value = message.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise WireError(BAD_REQUEST, f"{key!r} must be an integer from {low} to {high}")
    return value
