"""
Tests for L{mmo.config}: every class of config error names the file and the
key, and good files read into typed sections with defaults.
"""

import os

from twisted.internet.protocol import Factory
from twisted.trial import unittest

from mmo import config
from mmo.config import ConfigError, ListeningAddress, listening_address
from mmo.config.world_geometry import Region, RegionGrid, grid_regions
from tests.support import write_config

GOOD = """
[deployment]
name = "game"
tls_dir = "tls"

[wire]
max_frame_size = 4096
idle_timeout = 30

[processes.mmo]
kind = "mmo"
client = "tcp:7000:interface=127.0.0.1"
"""


class LoadTests(unittest.TestCase):
    def assertConfigError(self, text, key, *fragments):
        """Loading C{text} fails with a message naming the file, C{key} and C{fragments}."""
        path = write_config(self, text)
        error = self.assertRaises(ConfigError, config.load, path)
        message = str(error)
        self.assertTrue(message.startswith(f"{path}: {key}: "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return error

    def test_good_file(self):
        path = write_config(self, GOOD)
        conf = config.load(path)
        self.assertEqual(conf.file, path)
        self.assertEqual(conf.deployment.name, "game")
        # Relative paths are relative to the config file, not the cwd.
        self.assertEqual(
            conf.deployment.tls_dir, os.path.abspath(os.path.join(os.path.dirname(path), "tls"))
        )
        self.assertEqual(conf.wire.max_frame_size, 4096)
        # An integer where a number is expected is accepted as a float.
        self.assertIsInstance(conf.wire.idle_timeout, float)
        self.assertEqual(conf.wire.idle_timeout, 30.0)
        # Defaults fill what the file leaves out.
        self.assertEqual(conf.wire.handshake_timeout, 10.0)
        self.assertEqual(conf.logging.format, "text")
        self.assertIsNone(conf.tls.certificate)
        process = conf.processes["mmo"]
        self.assertEqual(process.name, "mmo")
        self.assertEqual(process.hosts, ["localhost", "127.0.0.1", "::1"])
        self.assertIsNone(process.rpc)

    def test_shipped_standalone_config(self):
        """The config the README runs is valid."""
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        conf = config.load(os.path.join(here, "conf", "standalone.toml"))
        self.assertEqual(conf.process(kind="mmo").name, "mmo")

    def test_missing_file(self):
        path = os.path.join(self.mktemp(), "absent.toml")
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertEqual(str(error), f"{path}: cannot read: No such file or directory")

    def test_not_toml(self):
        path = write_config(self, "[wire\nmax_frame_size = 1\n")
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertIn(f"{path}: not valid TOML", str(error))
        self.assertIn("line 1", str(error))

    def test_unknown_key(self):
        self.assertConfigError(
            GOOD + "\n[logging]\nfromat = 'json'\n",
            "logging.fromat",
            "unknown key",
            "format",
        )

    def test_unknown_section(self):
        self.assertConfigError(GOOD + "\n[wires]\n", "wires", "unknown key")

    def test_unknown_process_key(self):
        self.assertConfigError(
            GOOD.replace('kind = "mmo"', 'kind = "mmo"\nlisten = "tcp:1"'),
            "processes.mmo.listen",
            "unknown key",
        )

    def test_bad_type(self):
        self.assertConfigError(
            GOOD.replace("max_frame_size = 4096", 'max_frame_size = "4k"'),
            "wire.max_frame_size",
            "must be an integer, got a string",
        )

    def test_bool_is_not_a_number(self):
        self.assertConfigError(
            GOOD.replace("idle_timeout = 30", "idle_timeout = true"),
            "wire.idle_timeout",
            "must be a number, got a boolean",
        )

    def test_section_not_a_table(self):
        self.assertConfigError('logging = "json"\n' + GOOD, "logging", "must be a table")

    def test_impossible_value(self):
        self.assertConfigError(
            GOOD.replace("max_frame_size = 4096", "max_frame_size = 3"),
            "wire.max_frame_size",
            "at least 256",
        )

    def test_bad_choice(self):
        self.assertConfigError(
            GOOD + "\n[logging]\nformat = 'xml'\n", "logging.format", "'text'", "'json'"
        )

    def test_bad_endpoint_type(self):
        self.assertConfigError(
            GOOD.replace("tcp:7000:interface=127.0.0.1", "tpc:7000"),
            "processes.mmo.client",
            "not a valid endpoint",
            "tpc",
        )

    def test_bad_endpoint_port(self):
        self.assertConfigError(
            GOOD.replace("tcp:7000:interface=127.0.0.1", "tcp:seven"),
            "processes.mmo.client",
            "not a valid endpoint",
        )

    def test_tls_endpoint_refused(self):
        """TLS comes from [tls]; an ssl: endpoint would wrap it twice."""
        self.assertConfigError(
            GOOD.replace("tcp:7000:interface=127.0.0.1", "ssl:7000"),
            "processes.mmo.client",
            "TLS is added by mmo",
        )

    def test_required_key(self):
        self.assertConfigError(
            GOOD.replace('kind = "mmo"\n', ""), "processes.mmo.kind", "is required"
        )

    def test_bad_process_name(self):
        self.assertConfigError(
            GOOD.replace("[processes.mmo]", "[processes.Zone_1]"),
            "processes.Zone_1",
            "DNS label",
        )

    def test_bad_host(self):
        self.assertConfigError(
            GOOD.replace('kind = "mmo"', 'kind = "mmo"\nhosts = ["localhost", "bad host"]'),
            "processes.mmo.hosts",
            "item 1",
            "'bad host'",
        )

    def test_gateway_needs_client_listener(self):
        self.assertConfigError(
            GOOD.replace('client = "tcp:7000:interface=127.0.0.1"', ""),
            "processes.mmo.client",
            "needs a client listener",
        )

    def test_keys_the_kind_does_not_use(self):
        """A key that a process's kind has no use for fails the start, naming it."""
        services = '\n[bus]\nbackend = "redis"\n[processes.%s]\nkind = "%s"\n%s\n'
        for kind, key, value in (
            ("lobby", "websocket", '"tcp:7441"'),
            ("zone", "websocket", '"tcp:7441"'),
            ("zone", "client", '"tcp:7001"'),
            ("chat", "factory", '"my.Factory"'),
            ("login", "realm", '"main"'),
            ("gateway", "rpc", '"tcp:7101"'),
        ):
            name = f"{kind}-1"
            self.assertConfigError(
                GOOD + services % (name, kind, f"{key} = {value}"),
                f"processes.{name}.{key}",
                f"a {kind!r} process does not use it",
            )

    def test_login_websocket(self):
        """A login process may have a WebSocket listener."""
        conf = config.load(
            write_config(
                self,
                GOOD + '\n[bus]\nbackend = "redis"\n[processes.login]\nkind = "login"\n'
                'client = "tcp:7100"\nwebsocket = "tcp:7440"\n',
            )
        )
        self.assertEqual(conf.processes["login"].websocket, "tcp:7440")

    def test_certificate_without_key(self):
        self.assertConfigError(
            GOOD + '\n[tls]\ncertificate = "chain.pem"\n', "tls.private_key", "together"
        )

    def test_host_named_like_another_process(self):
        self.assertConfigError(
            GOOD
            + '\n[bus]\nbackend = "redis"\n[processes.zone-1]\nkind = "zone"\nhosts = ["mmo"]\n',
            "processes.zone-1.hosts",
            "name of another process",
        )

    def test_resume_buffer_within_the_unread_limit(self):
        """A resume's replay must fit what a connection may leave unread."""
        self.assertConfigError(
            GOOD + "\n[listeners]\nmax_unsent = 100000\n",
            "gateway.resume_buffer_bytes",
            "max_unsent (100000)",
        )
        self.assertConfigError(
            GOOD + '\n[listeners]\nexempt = ["127.0.0.1", "nowhere"]\n',
            "listeners.exempt",
            "not an IP address",
        )

    def test_no_processes(self):
        self.assertConfigError('[deployment]\nname = "x"\n', "processes", "at least one")


class ProcessChoiceTests(unittest.TestCase):
    TEXT = """
    [bus]
    backend = "redis"
    [processes.zone-1]
    kind = "zone"
    [processes.zone-2]
    kind = "zone"
    [processes.mmo]
    kind = "mmo"
    client = "tcp:0"
    """

    def setUp(self):
        self.conf = config.load(write_config(self, self.TEXT))

    def test_only_one_of_kind(self):
        self.assertEqual(self.conf.process(kind="mmo").name, "mmo")

    def test_by_name(self):
        self.assertEqual(self.conf.process("zone-2", "zone").name, "zone-2")

    def test_ambiguous(self):
        error = self.assertRaises(ConfigError, self.conf.process, None, "zone")
        self.assertIn("--process", str(error))
        self.assertIn("zone-1, zone-2", str(error))
        self.assertIn(self.conf.file, str(error))

    def test_unknown_name(self):
        error = self.assertRaises(ConfigError, self.conf.process, "zone-9")
        self.assertIn("processes.zone-9: no such process", str(error))

    def test_wrong_kind(self):
        error = self.assertRaises(ConfigError, self.conf.process, "zone-1", "mmo")
        self.assertIn("processes.zone-1.kind", str(error))


class LootSection(config.Section):
    fields = {"drop_rate": config.Number(0.1, minimum=0, maximum=1, kind=float)}


class GameConfig(config.Config):
    fields = {**config.Config.fields, "loot": config.Table(LootSection)}


class GameConfigTests(unittest.TestCase):
    """A game's own sections, as docs/configuration.md shows them."""

    def test_read(self):
        conf = config.load(write_config(self, GOOD + "\n[loot]\ndrop_rate = 0.5\n"), GameConfig)
        self.assertIsInstance(conf, GameConfig)
        self.assertEqual(conf.loot.drop_rate, 0.5)
        self.assertEqual(conf.wire.max_frame_size, 4096)

    def test_error_names_file_and_key(self):
        path = write_config(self, GOOD + "\n[loot]\ndrop_rate = 3\n")
        error = self.assertRaises(ConfigError, config.load, path, GameConfig)
        self.assertEqual(str(error), f"{path}: loot.drop_rate: must be at most 1, got 3")

    def test_base_config_refuses_the_section(self):
        path = write_config(self, GOOD + "\n[loot]\ndrop_rate = 0.5\n")
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertIn("loot: unknown key", str(error))


class ListeningAddressTests(unittest.TestCase):
    """Where an endpoint description listens, read through the endpoint's public C{listen}."""

    def test_tcp(self):
        self.assertEqual(listening_address("tcp:7000"), ListeningAddress(port=7000, interface=""))
        self.assertEqual(
            listening_address("tcp:port=7001:interface=127.0.0.1"),
            ListeningAddress(port=7001, interface="127.0.0.1"),
        )

    def test_tcp6(self):
        self.assertEqual(
            listening_address("tcp6:7002"), ListeningAddress(port=7002, interface="::")
        )
        self.assertEqual(
            listening_address("tcp6:7003:interface=\\:\\:1"),
            ListeningAddress(port=7003, interface="::1"),
        )

    def test_unix_path_is_absolute(self):
        self.assertEqual(
            listening_address("unix:run/mmo.sock"),
            ListeningAddress(path=os.path.abspath("run/mmo.sock")),
        )

    def test_other_kinds_unknown(self):
        """An endpoint of a plugin (here autobahn's, around TCP) is not asked to listen."""
        self.assertIsNone(listening_address(r"autobahn:tcp\:7000:url=ws\://localhost\:7000"))

    def test_does_not_listen(self):
        """Reading the address binds nothing: the port stays free for someone else."""
        from twisted.internet import reactor

        address = listening_address("tcp:0:interface=127.0.0.1")
        self.assertEqual(address, ListeningAddress(port=0, interface="127.0.0.1"))
        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        self.assertEqual(listening_address(f"tcp:{number}").port, number)

    def test_invalid(self):
        self.assertRaises(ValueError, listening_address, "tcp:seven")

    def test_clashes(self):
        tcp = ListeningAddress(port=7000, interface="127.0.0.1")
        self.assertTrue(tcp.clashes(ListeningAddress(port=7000, interface="127.0.0.1")))
        self.assertTrue(tcp.clashes(ListeningAddress(port=7000, interface="")))
        self.assertTrue(tcp.clashes(ListeningAddress(port=7000, interface="::")))
        self.assertFalse(tcp.clashes(ListeningAddress(port=7000, interface="127.0.0.2")))
        self.assertFalse(tcp.clashes(ListeningAddress(port=7001, interface="127.0.0.1")))
        # Port 0 is chosen by the system at start: never a clash.
        self.assertFalse(ListeningAddress(port=0).clashes(ListeningAddress(port=0)))
        unix = ListeningAddress(path="/run/mmo.sock")
        self.assertTrue(unix.clashes(ListeningAddress(path="/run/mmo.sock")))
        self.assertFalse(unix.clashes(ListeningAddress(path="/run/other.sock")))
        self.assertFalse(unix.clashes(tcp))

    def test_client_port(self):
        """The port clients are sent to comes from the same reading."""
        text = GOOD.replace("tcp:7000:interface=127.0.0.1", "tcp:interface=127.0.0.1:port=7004")
        conf = config.load(write_config(self, text))
        self.assertEqual(conf.processes["mmo"].client_port(), 7004)
        self.assertEqual(conf.processes["mmo"].public_address(), ("localhost", 7004))

    def test_unix_client_needs_public(self):
        self.assertRaises(
            ConfigError,
            config.load,
            write_config(self, GOOD.replace("tcp:7000:interface=127.0.0.1", "unix:mmo.sock")),
        )

    def test_unix_socket_clash(self):
        """Two listeners on one socket path (relative to the working directory, as Twisted's)."""
        text = GOOD.replace(
            'client = "tcp:7000:interface=127.0.0.1"',
            'client = "tcp:7000:interface=127.0.0.1"\nrpc = "unix:mmo.sock"',
        )
        text += '[bus]\nbackend = "redis"\n'
        text += '[processes.zone-1]\nkind = "zone"\nrpc = "unix:./mmo.sock"\n'
        path = write_config(self, text)
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertEqual(
            str(error),
            f"{path}: processes.zone-1.rpc: port {os.path.abspath('mmo.sock')} is taken by "
            "processes.mmo.rpc on the same machine",
        )


class RegionGridTests(unittest.TestCase):
    """The world's geometry, shared by the C{[world]} checks and the zones' map."""

    def test_grid_regions(self):
        regions = grid_regions(300, 200, 3, 2, ["a", "b", "c", "d", "e", "f"])
        self.assertEqual(
            [(r.name, r.x0, r.y0, r.x1, r.y1, r.process) for r in regions[:4]],
            [
                ("r0c0", 0, 0, 100, 100, "a"),
                ("r0c1", 100, 0, 200, 100, "b"),
                ("r0c2", 200, 0, 300, 100, "c"),
                ("r1c0", 0, 100, 100, 200, "d"),
            ],
        )
        grid = RegionGrid(300, 200, regions)
        self.assertEqual(list(grid.gaps()), [])
        self.assertEqual(grid.overlaps(), [])

    def test_region_at(self):
        left, right = Region("left", 0, 0, 30, 10, "z"), Region("right", 30, 0, 100, 10, "z")
        grid = RegionGrid(100, 10, [left, right])
        self.assertIs(grid.region_at(0, 0), left)
        self.assertIs(grid.region_at(29.999, 5), left)
        # Half-open: a border belongs to the region that starts there...
        self.assertIs(grid.region_at(30, 5), right)
        # ...and the map's own far edges to the regions along them.
        self.assertIs(grid.region_at(100, 10), right)
        self.assertIsNone(grid.region_at(100.001, 5))
        self.assertIsNone(grid.region_at(5, -0.001))

    def test_gaps(self):
        """Cells nobody covers, bottom to top and left to right; C{region_at} has none there."""
        regions = [Region("a", 0, 0, 40, 50, "z"), Region("b", 60, 50, 100, 100, "z")]
        grid = RegionGrid(100, 100, regions)
        self.assertEqual(
            list(grid.gaps()),
            [(40, 0, 60, 50), (60, 0, 100, 50), (0, 50, 40, 100), (40, 50, 60, 100)],
        )
        self.assertIsNone(grid.region_at(50, 10))
        self.assertEqual(grid.overlaps(), [])

    def test_gap_at_the_map_edge(self):
        grid = RegionGrid(100, 100, [Region("a", 0, 0, 100, 80, "z")])
        self.assertEqual(list(grid.gaps()), [(0, 80, 100, 100)])

    def test_overlaps(self):
        """Each region overlapping earlier ones, with the first of them, in order."""
        a = Region("a", 0, 0, 50, 100, "z")
        b = Region("b", 50, 0, 100, 100, "z")
        c = Region("c", 60, 40, 70, 60, "z")
        d = Region("d", 0, 0, 100, 10, "z")
        grid = RegionGrid(100, 100, [a, b, c, d])
        self.assertEqual(grid.overlaps(), [(c, b), (d, a)])
        self.assertEqual(d.intersection(a), (0, 0, 50, 10))
        # Touching borders are no overlap.
        self.assertEqual(RegionGrid(100, 100, [a, b]).overlaps(), [])

    def test_neighbours(self):
        regions = grid_regions(300, 300, 3, 3, ["z"] * 9)
        grid = RegionGrid(300, 300, regions)
        self.assertEqual(len(grid.neighbours("r1c1")), 8)
        self.assertEqual({r.name for r in grid.neighbours("r0c0")}, {"r0c1", "r1c0", "r1c1"})

    def test_world_map_is_built_on_it(self):
        """The zones' map answers from the same geometry and names the same C{Region}."""
        from mmo.zone import world

        self.assertIs(world.Region, Region)
        conf = config.load(
            write_config(self, GOOD + "\n[world]\ncolumns = 2\nzones = ['mmo', 'mmo']\n")
        )
        world_map = world.WorldMap.from_config(conf)
        grid = RegionGrid(
            conf.world.width, conf.world.height, [Region(*entry) for entry in conf.world.layout]
        )
        for x, y in ((0, 0), (499.9, 3), (500, 3), (1000, 1000)):
            self.assertEqual(world_map.region_at(x, y), grid.region_at(x, y))
