"""
Tests for L{mmo.logs}: one line per event with the process name, as text or
JSON lines, filtered by level; and the hand-over to twistd.
"""

import io
import json
import os
import sys

from twisted.logger import Logger, LogPublisher
from twisted.python.logfile import LogFile
from twisted.trial import unittest

from mmo import logs


def emit(format, level="info", **options):
    """Log a few events through an observer; return what it wrote."""
    out = io.StringIO()
    publisher = LogPublisher(logs.observer("zone-7", format, level, out))
    log = Logger(namespace="mmo.test", observer=publisher)
    log.debug("quiet {x}", x=1)
    log.info("entity {entity} moved\nto {where}", entity=42, where="north", **options)
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.failure("tick failed")
    return out.getvalue()


class TextTests(unittest.TestCase):
    def test_one_line_per_event(self):
        lines = emit("text").splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn("[zone-7] info mmo.test: entity 42 moved\\nto north", lines[0])
        # The traceback stays on the event's line.
        self.assertIn("[zone-7] critical mmo.test: tick failed\\nTraceback", lines[1])
        self.assertIn("ZeroDivisionError", lines[1])

    def test_level(self):
        self.assertIn("quiet 1", emit("text", "debug"))
        self.assertNotIn("quiet 1", emit("text", "info"))
        self.assertNotIn("moved", emit("text", "error"))
        self.assertIn("tick failed", emit("text", "error"))


class JSONTests(unittest.TestCase):
    def test_json_lines(self):
        lines = emit("json").splitlines()
        self.assertEqual(len(lines), 2)
        record = json.loads(lines[0])
        self.assertEqual(record["service"], "zone-7")
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["namespace"], "mmo.test")
        self.assertEqual(record["text"], "entity 42 moved\nto north")
        # The event's own simple fields are kept, for log search.
        self.assertEqual(record["entity"], 42)
        self.assertEqual(record["where"], "north")
        self.assertIsInstance(record["time"], float)
        failure = json.loads(lines[1])
        self.assertEqual(failure["level"], "critical")
        self.assertIn("ZeroDivisionError", failure["text"])

    def test_unserializable_fields_are_dropped(self):
        record = json.loads(emit("json", thing=object()).splitlines()[0])
        self.assertNotIn("thing", record)


class TwistdTests(unittest.TestCase):
    def setUp(self):
        self.addCleanup(setattr, logs, "_twistd_settings", logs._twistd_settings)

    def test_takes_the_logger_slot(self):
        options = {"logger": None, "nodaemon": True, "logfile": None}
        logs.use_for_twistd("mmo", "json", "info", options)
        self.assertEqual(options["logger"], "mmo.logs.twistd_observer")

    def test_respects_explicit_logger(self):
        options = {"logger": "my.observer", "nodaemon": True}
        logs.use_for_twistd("mmo", "json", "info", options)
        self.assertEqual(options["logger"], "my.observer")

    def test_foreground_writes_stdout(self):
        logs.use_for_twistd("mmo", "text", "info", {"nodaemon": True, "logfile": None})
        observer = logs.twistd_observer()
        self.assertIs(observer._observer._outFile, sys.stdout)

    def test_logfile(self):
        path = os.path.abspath(self.mktemp())
        logs.use_for_twistd("mmo", "text", "info", {"nodaemon": False, "logfile": path})
        observer = logs.twistd_observer()
        out = observer._observer._outFile
        self.addCleanup(out.close)
        self.assertIsInstance(out, LogFile)
        Logger(namespace="t", observer=observer).info("hello file")
        with open(path) as f:
            self.assertIn("[mmo] info t: hello file", f.read())
