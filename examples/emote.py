"""
A custom message added by subclassing: players send an emote and everyone
connected sees it.

Run it with the standalone server:

    PYTHONPATH=examples twistd -n mmo --config examples/emote.toml

(after `make certs CONFIG=examples/emote.toml` once).  Players log in and
present their ticket as usual; then they may emote.  The protocol parses and
checks the message; the domain object (L{Emotes}) decides what happens and
knows no bytes; the factory ties them together and is named in the config.
"""

from mmo.standalone.protocol import StandaloneFactory, StandaloneProtocol
from mmo.wire import codes
from mmo.wire.codes import WireError

#: The emotes a player may use.
EMOTES = frozenset({"wave", "bow", "dance", "cheer"})


class Emotes:
    """The game rule: who may emote what, and who sees it."""

    def __init__(self):
        self.counts = {}

    def emote(self, sender, name, audience):
        """Count the emote and show it to everyone admitted but the sender."""
        if name not in EMOTES:
            raise WireError(codes.BAD_REQUEST, f"unknown emote {name!r}")
        self.counts[name] = self.counts.get(name, 0) + 1
        for connection in audience:
            if connection is not sender and connection.ticket is not None:
                connection.push("emote", name=name, by=sender.ticket.name)
        return self.counts[name]


class EmoteProtocol(StandaloneProtocol):
    def message_emote(self, message):
        name = self.field(message, "name", str)
        count = self.factory.emotes.emote(self, name, self.factory.connections)
        return {"count": count}


class EmoteFactory(StandaloneFactory):
    protocol = EmoteProtocol

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.emotes = Emotes()
