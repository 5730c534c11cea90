"""
Tests of refresh token logins (L{mmo.login.service.LoginService}
C{login_refresh} and the C{login} message's C{remember}, C{device} and
C{refresh}): no password hash, rotation, reuse detection, device binding,
expiry, logout and ban revocation, throttles.  The store and the tickets
run on a L{task.Clock}; the end to end flow with real processes is in
L{tests.test_login_e2e}.
"""

from __future__ import annotations

from mmo.login.refresh import RefreshToken
from mmo.wire import codes
from tests import support
from tests.test_login import PASSWORD, AdmissionTestCase, LoginTestCase

ADDRESS = "10.0.0.1"


class RefreshLoginTests(LoginTestCase):
    def setUp(self):
        d = super().setUp()
        return d.addCallback(
            lambda _: self.call(self.login.register("Alice", PASSWORD, ADDRESS))
        ).addCallback(lambda account: setattr(self, "account", account))

    async def remembered(self, device="phone", address=ADDRESS) -> dict:
        return await self.login.login("alice", PASSWORD, address, device=device)

    async def refused(self, token, device="phone", address=ADDRESS, code=codes.REFRESH_REFUSED):
        error = await self.failure_of(self.login.login_refresh(token, device, address))
        self.assertEqual(error.code, code)

    async def test_refresh_logs_in_without_a_password_hash(self):
        reply = await self.remembered()
        ttl = self.config.login.refresh_ttl
        self.assertEqual(reply["refresh_expires"], self.clock.seconds() + ttl)
        self.assertIsNotNone(RefreshToken.parse(reply["refresh"]))
        self.hasher.verified.clear()
        self.clock.advance(5)
        again = await self.login.login_refresh(reply["refresh"], "phone", ADDRESS)
        self.assertEqual(self.hasher.verified, [])
        ticket = self.signer.verify(again["ticket"])
        self.assertEqual((ticket.account_id, ticket.name), (self.account.id, "Alice"))
        self.assertEqual(
            {k: again[k] for k in ("account", "name", "realm")},
            {"account": self.account.id, "name": "Alice", "realm": "main"},
        )
        self.assertEqual(again["gateway"]["name"], "gw-a")
        self.assertEqual(again["refresh_expires"], self.clock.seconds() + ttl)
        self.assertNotEqual(again["refresh"], reply["refresh"])
        # Same device, same family: the public half stays, the secret changes.
        self.assertEqual(
            RefreshToken.parse(again["refresh"]).family,
            RefreshToken.parse(reply["refresh"]).family,
        )

    async def test_no_refresh_without_a_device(self):
        reply = await self.login.login("alice", PASSWORD, ADDRESS)
        self.assertNotIn("refresh", reply)
        self.assertEqual(await self.store.refresh_families(self.account.id), [])

    async def test_token_stored_only_hashed(self):
        reply = await self.remembered()
        token = RefreshToken.parse(reply["refresh"])
        [family] = await self.store.refresh_families(self.account.id)
        self.assertEqual(family.token_hash, token.hashed)
        self.assertNotIn(token.secret, repr(await self.store.dump()))
        self.assertNotIn(token.secret, repr(family))

    async def test_rotation_and_reuse_revokes_the_device(self):
        """
        Each token works once; a spent one presented again (a thief's copy,
        or the owner's after the thief's) revokes the device's family, so
        the newer token stops working too; other devices keep theirs.
        """
        logs = support.LogCapture(self)
        first = (await self.remembered())["refresh"]
        laptop = (await self.remembered("laptop"))["refresh"]
        second = (await self.login.login_refresh(first, "phone", ADDRESS))["refresh"]
        await self.refused(first)
        self.assertEqual(len(logs.matching("spent refresh token", self.account.id)), 1)
        await self.refused(second)
        await self.login.login_refresh(laptop, "laptop", ADDRESS)

    async def test_bound_to_the_device(self):
        token = (await self.remembered())["refresh"]
        await self.refused(token, device="laptop")
        # Refused without spending it.
        await self.login.login_refresh(token, "phone", ADDRESS)

    async def test_expiry(self):
        token = (await self.remembered())["refresh"]
        self.clock.advance(self.config.login.refresh_ttl)
        await self.announce("gw-a", "main", 10)
        await self.refused(token)

    async def test_malformed_tokens(self):
        for token in (None, 7, "", "nodot", "a.b.c", ".x", "x.", "a." + "b" * 200):
            await self.refused(token)

    async def test_logout_of_one_device_or_all(self):
        phone = await self.remembered("phone")
        laptop = await self.remembered("laptop")
        tablet = await self.remembered("tablet")
        await self.login.logout(phone["ticket"], "phone")
        await self.refused(phone["refresh"])
        laptop = await self.login.login_refresh(laptop["refresh"], "laptop", ADDRESS)
        await self.login.logout(laptop["ticket"])
        await self.refused(laptop["refresh"], "laptop")
        await self.refused(tablet["refresh"], "tablet")

    async def test_ban_revokes(self):
        token = (await self.remembered())["refresh"]
        await self.store.update_account(self.account.id, banned=True)
        await self.refused(token)

    async def test_banned_account_with_a_token(self):
        """A token of a banned account (issued as the ban came) gives 'banned', and goes."""
        token = RefreshToken.new()
        await self.store.update_account(self.account.id, banned=True)
        await self.store.issue_refresh(self.account.id, "phone", token.family, token.hashed, 60, 2)
        await self.refused(str(token), code=codes.BANNED)
        self.assertEqual(await self.store.refresh_families(self.account.id), [])

    async def test_refused_tokens_throttle_the_address(self):
        token = (await self.remembered())["refresh"]
        for i in range(self.config.login.ip_failures):
            await self.refused(f"guess{i}.secret", address="10.0.0.66")
        await self.refused(token, address="10.0.0.66", code=codes.THROTTLED)
        # Password logins from there are throttled too; other addresses are not.
        error = await self.failure_of(self.login.login("alice", PASSWORD, "10.0.0.66"))
        self.assertEqual(error.code, codes.THROTTLED)
        await self.login.login_refresh(token, "phone", ADDRESS)

    async def test_no_gateway_keeps_the_token(self):
        """A refresh login that cannot be answered does not spend the token."""
        token = (await self.remembered())["refresh"]
        error = await self.failure_of(self.login.login_refresh(token, "phone", ADDRESS, "east"))
        self.assertEqual(error.code, codes.NO_GATEWAY)
        await self.login.login_refresh(token, "phone", ADDRESS)


class RefreshProtocolTests(AdmissionTestCase):
    """The fields of the login message, on the standalone protocol."""

    def setUp(self):
        d = super().setUp()
        return d.addCallback(lambda _: self.announce("mmo", "east", 0, kind="mmo"))

    async def login_frame(self, fields, connection=None):
        proto, wire = connection or self.connect()
        [reply] = await self.request(proto, wire, {"t": "login", "id": 2, **fields})
        return reply

    async def test_remember_then_refresh(self):
        await self.login.register("Zed", PASSWORD, "127.0.0.1")
        fields = {"name": "zed", "password": PASSWORD, "realm": "east"}
        reply = await self.login_frame({**fields, "remember": True, "device": "phone"})
        self.assertEqual(reply["t"], "reply")
        again = await self.login_frame(
            {"refresh": reply["refresh"], "device": "phone", "realm": "east"}
        )
        self.assertEqual((again["t"], again["name"]), ("reply", "Zed"))
        self.assertNotEqual(again["refresh"], reply["refresh"])
        proto, wire = self.connect(4001)
        [admitted] = await self.request(
            proto, wire, {"t": "auth", "id": 3, "ticket": again["ticket"]}
        )
        self.assertEqual(admitted["name"], "Zed")
        # Without remember, no token; remember false is the same.
        for extra in ({}, {"remember": False, "device": "phone"}):
            self.assertNotIn("refresh", await self.login_frame({**fields, **extra}))
        # Logout with the device revokes it.
        proto, wire = self.connect(4002)
        [done] = await self.request(
            proto, wire, {"t": "logout", "id": 2, "ticket": again["ticket"], "device": "phone"}
        )
        self.assertEqual(done, {"t": "reply", "id": 2})
        error = await self.login_frame({"refresh": again["refresh"], "device": "phone"})
        self.assertEqual(error["code"], codes.REFRESH_REFUSED)

    async def test_bad_fields(self):
        for fields in (
            {"name": "zed", "password": PASSWORD, "remember": True},
            {"name": "zed", "password": PASSWORD, "remember": "yes", "device": "phone"},
            {"name": "zed", "password": PASSWORD, "remember": True, "device": ""},
            {"name": "zed", "password": PASSWORD, "remember": True, "device": "x" * 65},
            {"name": "zed", "password": PASSWORD, "remember": True, "device": "a\nb"},
            {"refresh": "a.b"},
            {"refresh": 5, "device": "phone"},
            {"refresh": "a.b", "password": PASSWORD, "device": "phone"},
        ):
            proto, wire = self.connect()
            error = await self.login_frame(fields, (proto, wire))
            self.assertEqual((error["t"], error["code"]), ("error", codes.BAD_REQUEST), fields)
            self.assertFalse(wire.disconnecting)
