"""
The bus: ephemeral state shared by the processes of a deployment.

  - publish/subscribe on named channels;
  - the service directory: each process announces itself (kind, realm,
    addresses, load) with an expiry, renewed by a heartbeat, so a process
    that stops reporting drops out;
  - small expiring keys: counters for throttles, one-time claims (a session
    ticket used once), values (revocations, resumable sessions).

Two backends behind L{IBus}: L{mmo.bus.memory} inside one process (the
standalone server) and L{mmo.bus.redis} across processes and machines.
Every method returns a Deferred.  Use L{make_bus}.
"""

from __future__ import annotations

from zope.interface import Interface

from mmo.config import ConfigError
from mmo.unavailable import BackendUnavailable


class BusError(BackendUnavailable):
    """
    The bus could not do what was asked: its server is unreachable, slow or
    refused.  The bus holds nothing a retry could not redo, so every bus
    failure is one a client is told to retry after (L{mmo.unavailable}).
    """


class IBus(Interface):
    def start():
        """Connect (and, for Redis, subscribe); Deferred[None]."""

    def stop():
        """Disconnect; Deferred[None]."""

    # -- publish / subscribe -------------------------------------------------

    def publish(channel, message):
        """Send C{message} (a msgpack-able dict) to every subscriber of C{channel}."""

    def subscribe(channel, callback):
        """
        Call C{callback(message)} for each message published on C{channel}
        from now on, in publication order, in every process.  Deferred firing
        (once the subscription is active) with an object whose C{cancel()}
        returns a Deferred.  Subscriptions survive reconnects.
        """

    # -- directory -------------------------------------------------------------

    def announce(name, info, ttl):
        """
        Put process C{name} in the directory with C{info} (a msgpack-able
        dict: kind, realm, addresses, load...) for C{ttl} seconds.
        """

    def withdraw(name):
        """Remove process C{name} from the directory now."""

    def services(kind=None):
        """Deferred[dict]: name -> info of every live entry (of C{kind})."""

    # -- expiring keys -----------------------------------------------------------

    def hit(key, window):
        """
        Count one event on C{key}; the count expires C{window} seconds after
        its first event.  Deferred[int]: the count including this one.
        """

    def count(key):
        """Deferred[int]: the current count of C{key} (0 if none)."""

    def clear(key):
        """Forget the count or value of C{key}."""

    def claim(key, ttl):
        """
        Deferred[bool]: True for exactly one caller across all processes
        until C{ttl} seconds have passed.
        """

    def put(key, value, ttl=None):
        """Store C{value} (msgpack-able) under C{key}, for C{ttl} seconds if given."""

    def get(key):
        """Deferred: the value under C{key}, or C{None}."""


def make_bus(config, reactor=None) -> IBus:
    """
    The bus the config's C{[bus]} section asks for (not started).

    @raise ConfigError: The in-process bus was asked for in a deployment of
        several processes, which could not see each other.
    """
    if config.bus.backend == "redis":
        from mmo.bus.redis import RedisBus

        return RedisBus(config, reactor=reactor)
    served = sorted(p.name for p in config.processes.values() if p.kind != "manager")
    if len(served) > 1:
        raise ConfigError(
            f"processes {', '.join(served)} share state, which the in-process bus "
            'cannot do: use backend = "redis"',
            ("bus", "backend"),
            config.file,
        )
    from mmo.bus.memory import MemoryBus

    return MemoryBus(reactor=reactor)
