"""
Chat's flood limit: a token bucket per account (C{[chat] rate} and
C{burst}), shared by all its sessions, on top of the gateway's limits on all
client messages.
"""

from __future__ import annotations

from collections.abc import Collection

from mmo.ratelimit import TokenBucket
from mmo.wire import codes
from mmo.wire.codes import WireError


class FloodLimit:
    """
    The chat messages accounts may send: C{burst} at once, then C{rate} a
    second, on C{clock}.  A bucket is made on an account's first message
    and kept while the account is online or its bucket is not full again
    (a full bucket is as good as none).
    """

    def __init__(self, rate: float, burst: int, clock):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        #: account id -> its bucket.
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, account_id: str) -> None:
        """Spend one token of the account's bucket, or raise C{flooding} saying how long to wait."""
        bucket = self._buckets.get(account_id)
        if bucket is None:
            bucket = self._buckets[account_id] = TokenBucket(self.rate, self.burst, self.clock)
        if not bucket.take():
            raise WireError(
                codes.FLOODING,
                f"you are sending chat messages too fast (at most {self.rate:g} a second, "
                f"{self.burst} at once); wait {bucket.wait():.1f} s",
            )

    def prune(self, online: Collection[str]) -> None:
        """
        Forget the full buckets of accounts not in C{online}, once there are
        many more buckets than accounts online.
        """
        if len(self._buckets) <= 2 * len(online) + 64:
            return
        for account_id, bucket in list(self._buckets.items()):
            if account_id not in online and bucket.full():
                del self._buckets[account_id]

    def bucket_count(self) -> int:
        """How many accounts have a bucket."""
        return len(self._buckets)
