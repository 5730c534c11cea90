"""
The token bucket: the one rate limit of the code base.

The gateway's flood limits (L{mmo.gateway.admission.FloodMeter}) keep one
per connection and per message class; chat (L{mmo.chat.flood.FloodLimit})
keeps one per account.  It lives here, below both, so that neither imports
the other.
"""

from __future__ import annotations


class TokenBucket:
    """
    A token bucket: holds up to C{burst} tokens, gains C{rate} per second of
    C{clock} time, and each message takes one.  Refilled lazily when asked,
    so it needs no timer; the gateway asks for every client message, hence
    the slots and the few operations per call.

    A new bucket is full.

    @ivar tokens: The tokens left as of the last call.
    @ivar stamp: The clock's time of the last call.
    """

    __slots__ = ("rate", "burst", "clock", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, clock):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock.seconds()

    def _refill(self) -> None:
        now = self.clock.seconds()
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def full(self) -> bool:
        """Whether the bucket is full again (its user has been calm long enough)."""
        self._refill()
        return self.tokens >= self.burst

    def take(self) -> bool:
        """Take a token: C{True} if there was one, C{False} (nothing taken) if not."""
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait(self) -> float:
        """Seconds until the bucket has a token to take (0 if it has one now)."""
        self._refill()
        return max(0.0, (1.0 - self.tokens) / self.rate)
