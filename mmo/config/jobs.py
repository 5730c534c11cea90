"""
The C{[jobs.NAME]} tables: scheduled jobs named in the config (see
C{docs/jobs.md}).  The schedule is read here; the handler, game code, is
imported when a process that runs the job starts (L{JobSection.load_handler}).
"""

from __future__ import annotations

import importlib

from mmo.config.processes import PROCESS_KINDS
from mmo.config.schema import REQUIRED, ArgsField, ConfigError, Field, Number, Section, Str

#: The names of jobs.
JOB_NAME = r"^[a-z][a-z0-9_.-]{0,63}$"

#: The kinds of process a job of the config may run in: those of game
#: services (the standalone C{mmo} runs every job).
JOB_KINDS = tuple(k for k in PROCESS_KINDS if k not in ("mmo", "login", "gateway", "manager"))


class ScheduleField(Field):
    """A schedule: seconds, C{"every 30s"}, a cron expression or an ISO time."""

    def convert(self, value, path, ctx):
        from mmo.schedules import ScheduleError, parse_schedule

        try:
            return parse_schedule(value)
        except ScheduleError as e:
            raise ConfigError(str(e), path) from None


class JobSection(Section):
    """One C{[jobs.NAME]} table."""

    fields = {
        "schedule": ScheduleField(
            REQUIRED, doc="Seconds, 'every 30s', a cron expression (UTC) or 'at ISO-TIME'."
        ),
        "handler": Str(
            REQUIRED,
            pattern=r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$",
            doc="package.module:function, an async function taking the run.",
        ),
        "kind": Str("lobby", choices=JOB_KINDS, doc="The kind of process that runs it."),
        "misfire": Str("skip", choices=("skip", "catch_up"), doc="What becomes of missed times."),
        "grace": Number(
            60.0, minimum=0, maximum=86400 * 365, kind=float, doc="Seconds a run may start late."
        ),
        "max_catch_up": Number(
            100, minimum=1, maximum=100000, doc="The most missed times catch_up runs."
        ),
        "lease": Number(
            10.0, minimum=0.3, maximum=3600, kind=float, doc="Seconds of the leader's lease."
        ),
        "args": ArgsField({}, doc="Settings given to the handler as run.args."),
    }

    def load_handler(self, file: str | None):
        """
        The handler, imported.

        @raise ConfigError: It cannot be imported, or is not callable; the
            error names the file and C{jobs.NAME.handler}.
        """
        module_name, _, attribute = self.handler.partition(":")
        path = ("jobs", self.name, "handler")
        try:
            module = importlib.import_module(module_name)
        except Exception as e:
            raise ConfigError(
                f"cannot import {module_name}: {type(e).__name__}: {e}", path, file
            ) from None
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise ConfigError(f"{module_name} has no function {attribute!r}", path, file)
        return handler
