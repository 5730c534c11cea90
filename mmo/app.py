"""
What every mmo twistd plugin shares: the C{--config} and C{--process}
options, config errors that end the start cleanly, and log set-up.

A plugin's C{tap.py} subclasses L{ConfigOptions}, setting C{kind}, and
wraps the services it makes in L{ProcessService}.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage

import mmo
from mmo import config as configmodule
from mmo import logs
from mmo.config import ConfigError


def fail(error: ConfigError) -> None:
    """End the start: the reason on standard error, exit status 1, no traceback."""
    raise SystemExit(f"mmo: {error}")


class ConfigOptions(usage.Options):
    """
    Options of an mmo plugin.

    @cvar kind: The process kind the plugin runs.
    @cvar config_class: The L{configmodule.Config} subclass to read the file
        with (a game team's own, with its extra sections).
    @ivar config: The loaded config.
    @ivar process: The section of the process to run.
    """

    kind = "mmo"
    config_class = configmodule.Config

    optParameters = [
        ["config", "c", None, "The deployment's config file (TOML)."],
        [
            "process",
            "p",
            None,
            "Which process of the config file to run (default: the only one of this kind).",
        ],
    ]

    def postOptions(self):
        if not self["config"]:
            raise usage.UsageError("--config FILE is required")
        try:
            self.config = configmodule.load(self["config"], self.config_class)
            self.process = self.config.process(self["process"], self.kind)
        except ConfigError as e:
            fail(e)
        parent = getattr(self, "parent", None)
        if parent is not None:
            # Inside twistd: log our way unless --logger was given.
            logs.use_for_twistd(
                self.process.name, self.config.logging.format, self.config.logging.level, parent
            )


class ProcessService(service.MultiService):
    """
    The top service of an mmo process: a config error while starting (a
    certificate that cannot be read, a port that cannot be bound) ends the
    process with the file, key and reason instead of a traceback.
    """

    log = Logger()

    def __init__(self, config, process, reactor=None):
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.config = config
        self.process = process
        self.setName(process.name)

    def startService(self):
        super().startService()
        # Logged once the reactor runs, i.e. once signals are handled too:
        # supervisors and tests wait for this line.
        self.reactor.callWhenRunning(
            self.log.info,
            "{process}: ready ({kind}, mmo {version})",
            process=self.process.name,
            kind=self.process.kind,
            version=mmo.__version__,
        )

    def privilegedStartService(self):
        try:
            super().privilegedStartService()
        except ConfigError as e:
            fail(e)
        except CannotListenError as e:
            fail(
                ConfigError(
                    f"cannot listen: {e}", ("processes", self.process.name), self.config.file
                )
            )


def build(make):
    """Call C{make()} (which builds services), ending the start on a config error."""
    try:
        return make()
    except ConfigError as e:
        fail(e)
    return None  # pragma: no cover
