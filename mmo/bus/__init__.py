"""
The bus: ephemeral state shared by the processes of a deployment.

  - publish/subscribe on named channels;
  - the service directory: each process announces itself (kind, realm,
    addresses, load) with an expiry, renewed by a heartbeat, so a process
    that stops reporting drops out;
  - small expiring keys: counters for throttles, one-time claims (a session
    ticket used once), values (revocations, resumable sessions);
  - leases with a fencing token: one holder at a time of a named lease
    (the leader of a scheduled job), each new holding numbered higher than
    every one before it.

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


#: The most items one L{IBus.put_many} command carries (the Redis bus sends
#: one script per chunk, so no command grows with the number of sessions).
PUT_MANY_CHUNK = 256


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

    def put_many(items, ttl=None):
        """
        Store every C{(key, value)} of C{items} as L{put} would, all with the
        same C{ttl}: one command per L{PUT_MANY_CHUNK} items instead of one
        per item (a gateway renews all its sessions' keys this way).
        """

    def get(key):
        """Deferred: the value under C{key}, or C{None}."""

    # -- leases ----------------------------------------------------------------------

    def lease(key, holder, ttl):
        """
        Take or renew the lease C{key} for C{holder} (a process name) for
        C{ttl} seconds.  Deferred: the lease's fencing token when C{holder}
        now holds it, C{None} when another holder does.  The token is new
        at every acquisition, higher than every token of C{key} before it
        (across processes and restarts of the holders); a renewal keeps it.
        Whatever a holder writes is stamped with its token, so that a
        write of a holder that lost the lease (a stale token) is refused.
        """

    def release_lease(key, holder):
        """
        End C{holder}'s lease C{key} now (another may take it at once).
        Deferred[bool]: whether C{holder} held it.
        """

    def lease_holder(key):
        """Deferred: C{(holder, token)} of the lease C{key} while held, else C{None}."""


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
