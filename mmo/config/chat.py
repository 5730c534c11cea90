"""
The C{[chat]} section: channels, history, moderation and flood rules.
"""

from __future__ import annotations

from mmo.config.schema import Number, Section, StrList


class ChatSection(Section):
    """Chat channels, history, moderation and flood rules."""

    fields = {
        "history": Number(
            50,
            minimum=0,
            maximum=10000,
            doc="Messages kept (persisted) per channel and shown on join.",
        ),
        "max_length": Number(500, minimum=1, maximum=65536, doc="Longest message, characters."),
        "rate": Number(
            1.0,
            minimum=0.01,
            maximum=10000,
            kind=float,
            doc="Chat messages per second a player may send on average.",
        ),
        "burst": Number(
            5, minimum=1, maximum=10000, doc="Chat messages a player may send at once."
        ),
        "moderators": StrList([], doc="Account names that may mute and unmute."),
        "channel_max_members": Number(
            10000, minimum=2, maximum=10000000, doc="Members of one channel."
        ),
    }
