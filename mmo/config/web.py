"""
The C{[web]} section: what the secure WebSocket listener of a standalone or
login process serves to plain HTTPS requests (the browser demo game).
"""

from __future__ import annotations

from mmo.config.schema import Bool, Section


class WebSection(Section):
    """The browser demo game on the WebSocket port."""

    fields = {
        "demo": Bool(
            True,
            doc="Serve the browser demo game (GET / over HTTPS) on the WebSocket port "
            "of the standalone and login processes; false: plain HTTPS requests get "
            "426 (upgrade required).",
        ),
    }
