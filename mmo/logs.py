"""
Log output: one line per event, tagged with the process name, as text or
as JSON lines (C{[logging] format}).

twistd picks the observer: the plugin options name L{twistd_observer} in
twistd's own C{--logger} slot, so C{--logfile}, C{-n} and log
rotation work as usual.
"""

from __future__ import annotations

import json
import sys
from typing import IO

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    formatTime,
)
from twisted.python.logfile import LogFile

_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def _text(event: dict) -> str:
    """The event's message, with any traceback, as one string."""
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text = f"{text}\n{failure.getTraceback()}".rstrip()
    return text


def _level(event: dict) -> str:
    level = event.get("log_level")
    return level.name if level is not None else "info"


def _namespace(event: dict) -> str:
    """Where the event comes from; for legacy C{twisted.python.log} events, their system."""
    namespace = event.get("log_namespace", "-")
    if namespace == "log_legacy":
        return event.get("log_system") or event.get("system") or "-"
    return namespace


def text_formatter(service: str):
    """One readable line per event; newlines in the message are escaped."""

    def format(event: dict) -> str:
        when = formatTime(event.get("log_time"), timeFormat=_TIME_FORMAT)
        namespace = _namespace(event)
        text = _text(event).replace("\\", "\\\\").replace("\n", "\\n")
        return f"{when} [{service}] {_level(event)} {namespace}: {text}\n"

    return format


#: Event keys that are not the caller's own fields.
_INTERNAL = frozenset({"format", "message", "isError", "system", "time", "failure", "why"})


def json_formatter(service: str):
    """One JSON object per line: time, service, level, namespace, text and
    the event's own simple fields."""

    def format(event: dict) -> str:
        record = {
            "time": event.get("log_time"),
            "service": service,
            "level": _level(event),
            "namespace": _namespace(event),
            "text": _text(event),
        }
        for key, value in event.items():
            if key.startswith("log_") or key in _INTERNAL or key in record:
                continue
            if isinstance(value, (str, int, float, bool)) or value is None:
                record[key] = value
        return json.dumps(record, default=str) + "\n"

    return format


def observer(service: str, format: str = "text", level: str = "info", out: IO[str] = None):
    """
    A log observer writing to C{out} (default: standard output) in C{format}
    (C{"text"} or C{"json"}), dropping events below C{level}.
    """
    formatter = (json_formatter if format == "json" else text_formatter)(service)
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[level])
    return FilteringLogObserver(
        FileLogObserver(out if out is not None else sys.stdout, formatter), [predicate]
    )


#: Where L{twistd_observer} writes (a manager passes its processes' lines
#: on there as they are); C{None} until it has made its observer.
output: IO[str] | None = None

#: What L{twistd_observer} makes, set by L{use_for_twistd}.
_twistd_settings: tuple | None = None


def use_for_twistd(service: str, format: str, level: str, twistd_options: dict) -> None:
    """
    Make twistd log through L{twistd_observer} (unless C{--logger} was given).

    twistd resolves its C{logger} option by name after the plugin's options
    are parsed, so the settings are kept here for it.
    """
    global _twistd_settings
    if twistd_options.get("logger"):
        return
    _twistd_settings = (service, format, level, twistd_options)
    twistd_options["logger"] = f"{__name__}.twistd_observer"


def twistd_observer():
    """
    The observer twistd starts logging to.  It writes where twistd would:
    standard output with C{-n} or C{--logfile=-}, otherwise the log file
    (C{twistd.log} by default), rotated as twistd rotates it.
    """
    global output
    service, format, level, options = _twistd_settings
    logfile = options.get("logfile") or ""
    if logfile == "-" or (not logfile and options.get("nodaemon")):
        out = sys.stdout
    else:
        out = LogFile.fromFullPath(logfile or "twistd.log")
    output = out
    return observer(service, format, level, out)
