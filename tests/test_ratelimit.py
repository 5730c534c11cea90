"""
Tests of mmo.ratelimit: the token bucket of the gateway's flood limits and of
chat, on a L{task.Clock}.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from mmo.ratelimit import TokenBucket


class TokenBucketTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1000)

    def test_starts_full(self):
        """A new bucket holds C{burst} tokens, then refuses without taking."""
        bucket = TokenBucket(1.0, 3, self.clock)
        self.assertTrue(bucket.full())
        self.assertEqual([bucket.take() for _ in range(4)], [True, True, True, False])
        self.assertEqual(bucket.tokens, 0.0)
        self.assertFalse(bucket.full())

    def test_refills_at_rate(self):
        """Tokens come back at C{rate} a second of the clock, fractions included."""
        bucket = TokenBucket(4.0, 2, self.clock)
        bucket.take()
        bucket.take()
        self.clock.advance(0.125)
        self.assertFalse(bucket.take())
        self.assertEqual(bucket.tokens, 0.5)
        self.clock.advance(0.125)
        self.assertTrue(bucket.take())
        self.assertFalse(bucket.take())

    def test_capped_at_burst(self):
        """A long calm gives back C{burst} tokens, no more."""
        bucket = TokenBucket(10.0, 2, self.clock)
        bucket.take()
        self.clock.advance(3600)
        self.assertTrue(bucket.full())
        self.assertEqual(bucket.tokens, 2)
        self.assertEqual([bucket.take() for _ in range(3)], [True, True, False])

    def test_wait(self):
        """L{TokenBucket.wait} is the time until a token can be taken."""
        bucket = TokenBucket(2.0, 1, self.clock)
        self.assertEqual(bucket.wait(), 0.0)
        bucket.take()
        self.assertEqual(bucket.wait(), 0.5)
        self.clock.advance(0.25)
        self.assertEqual(bucket.wait(), 0.25)
        self.clock.advance(0.25)
        self.assertEqual(bucket.wait(), 0.0)
        self.assertTrue(bucket.take())

    def test_wait_takes_nothing(self):
        """Asking how long to wait neither takes nor adds a token."""
        bucket = TokenBucket(1.0, 1, self.clock)
        bucket.take()
        self.clock.advance(0.5)
        for _ in range(3):
            self.assertEqual(bucket.wait(), 0.5)
        self.clock.advance(0.5)
        self.assertTrue(bucket.take())

    def test_clock_going_back(self):
        """A clock that goes back adds no tokens and takes none away."""
        bucket = TokenBucket(1.0, 2, self.clock)
        bucket.take()
        self.clock.rightNow -= 10
        self.assertEqual(bucket.wait(), 0.0)
        self.assertEqual(bucket.tokens, 1.0)
        # Time is counted again from the earlier reading.
        self.clock.advance(1)
        self.assertTrue(bucket.full())

    def test_slots(self):
        """Buckets are kept per connection and per account: no per-instance dict."""
        bucket = TokenBucket(1.0, 1, self.clock)
        self.assertFalse(hasattr(bucket, "__dict__"))
