"""mmo: an MMO game server framework on Twisted."""

__version__ = "0.2.0"
