"""
Packaging: the plugin files land in the installed twisted/plugins/ from a
normal (non-editable) install, with no __init__.py of ours there, and
twistd lists every mmo plugin.
"""

import os
import subprocess
import sys

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(ROOT, "twisted", "plugins")

#: Every plugin the project ships so far, by twistd name.
EXPECTED = {
    "mmo",
    "mmo-chat",
    "mmo-economy",
    "mmo-gateway",
    "mmo-ladder",
    "mmo-lobby",
    "mmo-login",
    "mmo-manager",
    "mmo-zone",
}


class PackagingTests(unittest.TestCase):
    def test_no_init_in_plugin_directories(self):
        """twisted/ and twisted/plugins/ must stay namespace directories."""
        self.assertFalse(os.path.exists(os.path.join(ROOT, "twisted", "__init__.py")))
        self.assertFalse(os.path.exists(os.path.join(PLUGINS, "__init__.py")))

    def test_plugins_are_thin(self):
        """Each plugin file only names its ServiceMaker; the work is in mmo.*.tap."""
        for name in os.listdir(PLUGINS):
            if not name.endswith(".py"):
                continue
            with open(os.path.join(PLUGINS, name)) as f:
                lines = [line for line in f.read().splitlines() if line.strip()]
            self.assertLessEqual(len(lines), 3, name)
            self.assertIn("ServiceMaker(", lines[-1], name)

    def test_installed_layout(self):
        """A non-editable install puts the plugin files into twisted/plugins/."""
        target = os.path.abspath(self.mktemp())
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "--target",
                target,
                ROOT,
            ],
            check=True,
        )
        installed = os.path.join(target, "twisted", "plugins")
        found = {name for name in os.listdir(installed) if name.endswith(".py")}
        shipped = {name for name in os.listdir(PLUGINS) if name.endswith(".py")}
        self.assertEqual(found, shipped)
        self.assertNotIn("__init__.py", os.listdir(installed))
        self.assertFalse(os.path.exists(os.path.join(target, "twisted", "__init__.py")))
        self.assertTrue(os.path.exists(os.path.join(target, "mmo", "standalone", "tap.py")))
        # The browser demo's built files and the admin console's page are package data.
        for static in (
            os.path.join("mmo", "web", "static"),
            os.path.join("mmo", "console", "static"),
        ):
            self.assertEqual(
                sorted(os.listdir(os.path.join(target, static))),
                sorted(os.listdir(os.path.join(ROOT, static))),
            )

    def test_twistd_lists_plugins(self):
        """twistd --help lists every mmo plugin, in this environment."""
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.argv = ['twistd', '--help']; "
                "from twisted.scripts.twistd import run; run()",
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        listed = {
            line.split()[0] for line in result.stdout.splitlines() if line.startswith("    mmo")
        }
        self.assertEqual(listed, EXPECTED, result.stdout + result.stderr)

    def test_service_makers(self):
        """The plugins load and point at real tap modules with Options and makeService."""
        makers = {m.tapname: m for m in getPlugins(IServiceMaker) if m.tapname.startswith("mmo")}
        self.assertEqual(set(makers), EXPECTED)
        for maker in makers.values():
            self.assertTrue(callable(maker.makeService))
            self.assertIn("--config", str(maker.options()))
