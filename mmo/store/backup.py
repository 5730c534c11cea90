"""
C{mmo-store}: back up and restore the store of a deployment.

    mmo-store dump --config FILE OUT
    mmo-store restore --config FILE IN

The backend is the one the config's C{[store]} section names.  A dump is
one JSON document::

    {"version": 1,
     "accounts": [{"id", "name", "password_hash", "created", "banned"}, ...],
     "characters": [{"id", "account_id", "name", "created", "data"}, ...]}

where a character's C{data} is its msgpack encoding in base64 (lossless:
msgpack keeps what JSON cannot, such as bytes and integer keys).  When there
are any, C{"logs"} (records in base64 msgpack), C{"ladders"} (a log record
and an outcome in base64 each), C{"jobs"} and C{"economy"} (the ledger; a
unique item's properties in base64 msgpack) follow: see C{docs/store.md}.  The file
holds password hashes: it is written with mode 0600, atomically (a
temporary file renamed over C{OUT}, so an interrupted dump never leaves a
half-written file behind).  A restore goes only into an empty store.

Errors end with one line, C{mmo-store: MESSAGE}, on standard error and
exit status 1.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import secrets
import sys
from collections.abc import Sequence

from twisted.internet import defer, task

from mmo.config import ConfigError, load
from mmo.store import StoreError, make_store, pack_data, unpack_data

#: Mode of dump files: they hold password hashes.
DUMP_MODE = 0o600


class UsageError(Exception):
    """The command line is wrong."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mmo-store",
        description="Back up and restore the store of an mmo deployment.",
    )
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dump = commands.add_parser(
        "dump", help="write everything in the store to a file (JSON, mode 0600)"
    )
    dump.add_argument("--config", required=True, metavar="FILE", help="the deployment's config")
    dump.add_argument("output", metavar="OUT", help="the file to write")
    restore = commands.add_parser("restore", help="load a dump into an empty store")
    restore.add_argument("--config", required=True, metavar="FILE", help="the deployment's config")
    restore.add_argument("input", metavar="IN", help="the file written by dump")
    return p


# -- the file format -----------------------------------------------------------


def encode_dump(dump: dict) -> bytes:
    """L{IStore.dump}'s result as the bytes of a dump file."""
    document = {
        "version": dump["version"],
        "accounts": dump["accounts"],
        "characters": [
            dict(c, data=base64.b64encode(pack_data(c["data"])).decode("ascii"))
            for c in dump["characters"]
        ],
    }
    if dump.get("logs"):
        # Log records (chat history, ignore lists) may hold bytes: base64 msgpack.
        document["logs"] = [
            dict(log, records=[_b64(pack_data(r)) for r in log["records"]]) for log in dump["logs"]
        ]
    if dump.get("ladders"):
        # A ladder's log records and outcomes are the ladder's bytes: base64.
        document["ladders"] = [
            dict(
                ladder,
                matches=[dict(m, record=_b64(m["record"])) for m in ladder["matches"]],
                applied=[dict(a, outcome=_b64(a["outcome"])) for a in ladder["applied"]],
            )
            for ladder in dump["ladders"]
        ]
    if dump.get("jobs"):
        document["jobs"] = dump["jobs"]
    if dump.get("economy"):
        # A unique item's properties are the ledger's msgpack bytes: base64.
        ledger = dump["economy"]
        items = [dict(item, props=_b64(item["props"])) for item in ledger["items"]]
        document["economy"] = dict(ledger, items=items)
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text, where: str):
    if not isinstance(text, str):
        raise StoreError(f"{where}: no base64 msgpack data")
    try:
        return unpack_data(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError, TypeError) as e:
        raise StoreError(f"{where}: not base64 msgpack: {e}")


def _unb64_bytes(text, where: str) -> bytes:
    if not isinstance(text, str):
        raise StoreError(f"{where}: no base64 data")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise StoreError(f"{where}: not base64: {e}")


def _decode_ladders(ladders) -> list:
    """The dump's ladders with their log records and outcomes as bytes."""
    if not isinstance(ladders, list):
        raise StoreError("ladders: not a list")
    decoded = []
    for index, ladder in enumerate(ladders):
        where = f"ladders[{index}]"
        if not isinstance(ladder, dict):
            raise StoreError(f"{where}: not a record")
        for key in ("matches", "applied"):
            entries = ladder.get(key)
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise StoreError(f"{where}.{key}: not a list of records")
        matches = [
            dict(m, record=_unb64_bytes(m.get("record"), f"{where}.matches[{n}].record"))
            for n, m in enumerate(ladder["matches"])
        ]
        applied = [
            dict(a, outcome=_unb64_bytes(a.get("outcome"), f"{where}.applied[{n}].outcome"))
            for n, a in enumerate(ladder["applied"])
        ]
        decoded.append(dict(ladder, matches=matches, applied=applied))
    return decoded


def _decode_economy(ledger) -> dict:
    """The dump's ledger with its unique items' properties as bytes."""
    if not isinstance(ledger, dict) or not isinstance(ledger.get("items"), list):
        raise StoreError("economy: no list of items")
    items = []
    for index, item in enumerate(ledger["items"]):
        if not isinstance(item, dict):
            raise StoreError(f"economy.items[{index}]: not a record")
        items.append(dict(item, props=_unb64_bytes(item.get("props"), f"economy.items[{index}]")))
    return dict(ledger, items=items)


def decode_dump(text: bytes) -> dict:
    """
    The bytes of a dump file as L{IStore.restore} takes them.

    @raise StoreError: Not a dump file.
    """
    try:
        document = json.loads(text)
    except ValueError as e:
        raise StoreError(f"not a dump (invalid JSON: {e})")
    if not isinstance(document, dict) or not isinstance(document.get("characters"), list):
        raise StoreError("not a dump (no list of characters)")
    characters = []
    for index, character in enumerate(document["characters"]):
        if not isinstance(character, dict):
            raise StoreError(f"characters[{index}]: not a record")
        data = _unb64(character.get("data"), f"characters[{index}].data")
        characters.append(dict(character, data=data))
    decoded = dict(document, characters=characters)
    if "logs" in document:
        if not isinstance(document["logs"], list):
            raise StoreError("logs: not a list")
        logs = []
        for index, log in enumerate(document["logs"]):
            if not isinstance(log, dict) or not isinstance(log.get("records"), list):
                raise StoreError(f"logs[{index}]: no list of records")
            records = [
                _unb64(r, f"logs[{index}].records[{n}]") for n, r in enumerate(log["records"])
            ]
            logs.append(dict(log, records=records))
        decoded["logs"] = logs
    if "ladders" in document:
        decoded["ladders"] = _decode_ladders(document["ladders"])
    if "economy" in document:
        decoded["economy"] = _decode_economy(document["economy"])
    return decoded


def write_atomically(path: str, data: bytes, mode: int = DUMP_MODE) -> None:
    """
    Write C{data} to C{path} with C{mode}: all of it or, if anything fails,
    nothing (the old file, if any, is left as it was).  The file never has a
    wider mode than C{mode}, not even for a moment.
    """
    directory, base = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{base}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temporary, flags, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# -- the commands ----------------------------------------------------------------


def _count(dump: dict) -> str:
    def plural(n, word):
        return f"{n} {word}" if n == 1 else f"{n} {word}s"

    counted = (
        f"{plural(len(dump['accounts']), 'account')} and "
        f"{plural(len(dump['characters']), 'character')}"
    )
    ladders, jobs = len(dump.get("ladders", [])), len(dump.get("jobs", []))
    if ladders or jobs:
        counted += f" (with {plural(ladders, 'ladder')} and {plural(jobs, 'job')})"
    postings = len(dump.get("economy", {}).get("postings", []))
    if postings:
        counted += f", and a ledger of {plural(postings, 'posting')}"
    return counted


@defer.inlineCallbacks
def _with_store(reactor, conf, action):
    store = make_store(conf, reactor=reactor)
    yield store.start()
    try:
        result = yield action(store)
    finally:
        yield store.stop()
    return result


@defer.inlineCallbacks
def dump_command(reactor, conf, output: str, stdout):
    if conf.store.backend == "sqlite" and not os.path.exists(conf.store.path):
        # Opening it would create an empty store, and the dump would look
        # like a good backup of nothing.
        raise StoreError(f"no SQLite database at {conf.store.path} (check [store] path)")
    dump = yield _with_store(reactor, conf, lambda store: store.dump())
    data = encode_dump(dump)
    try:
        write_atomically(output, data)
    except OSError as e:
        raise StoreError(f"cannot write {output}: {e.strerror or e}")
    stdout.write(f"mmo-store: wrote {_count(dump)} to {output}\n")


@defer.inlineCallbacks
def restore_command(reactor, conf, input_path: str, stdout):
    # Read and check the file before touching the store.
    try:
        with open(input_path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise StoreError(f"cannot read {input_path}: {e.strerror or e}")
    try:
        dump = decode_dump(text)
    except StoreError as e:
        raise StoreError(f"{input_path}: {e}")
    yield _with_store(reactor, conf, lambda store: store.restore(dump))
    stdout.write(f"mmo-store: restored {_count(dump)} from {input_path}\n")


@defer.inlineCallbacks
def run(reactor, argv: Sequence[str], stdout=None, stderr=None):
    """
    Run the command of C{argv} on C{reactor}, which must be running.

    @return: Deferred firing with the exit status (errors written to
        C{stderr}, never raised).
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        options = parser().parse_args(list(argv))
        conf = load(options.config)
        if options.command == "dump":
            yield dump_command(reactor, conf, options.output, stdout)
        else:
            yield restore_command(reactor, conf, options.input, stdout)
    except UsageError as e:
        stderr.write(f"mmo-store: {e}\n")
        stderr.write(parser().format_usage())
        return 2
    except (ConfigError, StoreError) as e:
        stderr.write(f"mmo-store: {e}\n")
        return 1
    except SystemExit as e:
        # --help
        return e.code if isinstance(e.code, int) else 0
    except Exception as e:
        stderr.write(f"mmo-store: unexpected error: {type(e).__name__}: {e}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None, reactor=None, stdout=None, stderr=None):
    """
    The C{mmo-store} command.

    Without a reactor, runs one (L{twisted.internet.task.react}) and exits
    with the status.  Given a reactor that is already running (tests, or
    embedding), returns a Deferred firing with the exit status instead.
    """
    if argv is None:
        argv = sys.argv[1:]
    if reactor is not None:
        return run(reactor, argv, stdout, stderr)

    @defer.inlineCallbacks
    def react_main(reactor):
        status = yield run(reactor, argv, stdout, stderr)
        if status:
            raise SystemExit(status)

    task.react(react_main)
