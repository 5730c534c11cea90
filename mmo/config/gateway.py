"""
The C{[gateway]} section: player sessions on gateways (heartbeat, resume,
drain) and their flood limits, with C{[gateway.flood.NAME]} classes of
messages.
"""

from __future__ import annotations

from mmo.config.schema import REQUIRED, Number, Section, StrList, Tables


class FloodClassSection(Section):
    """A class of client messages with a token bucket of its own."""

    fields = {
        "types": StrList(REQUIRED, doc="Message types (or prefixes ending in '.') in the class."),
        "rate": Number(
            REQUIRED,
            minimum=0.01,
            maximum=100000,
            kind=float,
            doc="Messages per second allowed on average.",
        ),
        "burst": Number(REQUIRED, minimum=1, maximum=100000, doc="Messages allowed at once."),
    }


class GatewaySection(Section):
    """Player sessions on gateways: heartbeat, flood limits, resume."""

    fields = {
        "heartbeat_interval": Number(
            15.0,
            minimum=0.1,
            maximum=3600,
            kind=float,
            doc="Seconds between server heartbeats to a quiet client.",
        ),
        "heartbeat_timeout": Number(
            45.0,
            minimum=0.2,
            maximum=86400,
            kind=float,
            doc="Seconds without any frame before the session is treated as dropped.",
        ),
        "resume_window": Number(
            60.0,
            minimum=0,
            maximum=86400,
            kind=float,
            doc="Seconds a dropped session is kept for the client to resume.",
        ),
        "resume_buffer": Number(
            1000, minimum=1, maximum=1000000, doc="Pushes kept per session for replay on resume."
        ),
        "resume_buffer_bytes": Number(
            1024 * 1024,
            minimum=64 * 1024,
            maximum=1024 * 1024 * 1024,
            doc="Bytes of pushes kept per session for replay on resume; the oldest go first.",
        ),
        "flood_rate": Number(
            20.0,
            minimum=0.01,
            maximum=100000,
            kind=float,
            doc="Messages per second a connection may send on average.",
        ),
        "flood_burst": Number(
            40, minimum=1, maximum=100000, doc="Messages a connection may send at once."
        ),
        "flood_strikes": Number(
            20,
            minimum=1,
            maximum=100000,
            doc="Messages refused for flooding before the client is disconnected.",
        ),
        "flood": Tables(
            FloodClassSection,
            name_pattern=r"^[a-z][a-z0-9_-]{0,31}$",
            name_rule="a lower-case name",
            doc="Message classes with their own limits.",
        ),
        "websocket_max_message": Number(
            65536,
            minimum=256,
            maximum=16 * 1024 * 1024,
            doc="Largest WebSocket message accepted, bytes.",
        ),
        "drain_timeout": Number(
            30.0,
            minimum=0.1,
            maximum=86400,
            kind=float,
            doc="Seconds a drain waits for every client to move to another gateway.",
        ),
        "gone_after": Number(
            30.0,
            minimum=0.1,
            maximum=86400,
            kind=float,
            doc=(
                "Seconds a gateway may be missing from the directory before the game "
                "services take it as gone and end the sessions it held."
            ),
        ),
    }

    def check(self):
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise self.error("heartbeat_timeout", "must be longer than heartbeat_interval")
