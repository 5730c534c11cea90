"""
The schema framework: L{Section}s that read a TOML table into attributes,
the L{Field} kinds that check one key each, and L{ConfigError}, which names
the file, the dotted key and the reason.

Every section of the config (built-in or a game's own) is a L{Section}
subclass declaring its keys as L{Field}s; nothing here knows a section.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

#: The value of a field that has no default: the key must be present.
REQUIRED: Any = object()


class ConfigError(Exception):
    """
    A configuration file is missing, unreadable or wrong.

    @ivar message: Why.
    @ivar path: The key path inside the file, outermost first (may be empty).
    @ivar file: The file name, once known.
    """

    def __init__(self, message: str, path: Iterable[str] = (), file: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = tuple(path)
        self.file = file

    def __str__(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(str(self.file))
        if self.path:
            parts.append(".".join(self.path))
        parts.append(self.message)
        return ": ".join(parts)


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class Context:
    """
    What fields need to know about the file being read.

    @ivar base: The directory of the config file: relative paths in the file
        are relative to it, not to the working directory.
    """

    def __init__(self, base: str):
        self.base = base


class Field:
    """
    One key of a section: its type, default and checks.

    Subclasses implement L{convert}, which turns the raw TOML value into the
    typed value or raises L{ConfigError} with the reason.
    """

    def __init__(self, default: Any = REQUIRED, doc: str = ""):
        self.default = default
        self.doc = doc

    def read(self, data: dict, name: str, path: tuple[str, ...], ctx: Context) -> Any:
        if name not in data:
            if self.default is REQUIRED:
                raise ConfigError("is required", path)
            return self.missing(path, ctx)
        return self.convert(data[name], path, ctx)

    def missing(self, path: tuple[str, ...], ctx: Context) -> Any:
        """The value when the key is absent."""
        return self.default

    def convert(self, value: Any, path: tuple[str, ...], ctx: Context) -> Any:
        raise NotImplementedError()


class Str(Field):
    """A string, optionally one of C{choices} or matching C{pattern}."""

    def __init__(self, default=REQUIRED, choices=None, pattern=None, doc=""):
        super().__init__(default, doc)
        self.choices = choices
        self.pattern = re.compile(pattern) if pattern else None

    def convert(self, value, path, ctx):
        if not isinstance(value, str):
            raise ConfigError(f"must be a string, got {_type_name(value)}", path)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(
                f"must be one of {', '.join(map(repr, self.choices))}, got {value!r}", path
            )
        if self.pattern is not None and not self.pattern.match(value):
            raise ConfigError(f"{value!r} does not match {self.pattern.pattern}", path)
        return value


class Number(Field):
    """An integer (or, with C{kind=float}, a number) within bounds."""

    def __init__(self, default=REQUIRED, minimum=None, maximum=None, kind=int, doc=""):
        super().__init__(default, doc)
        self.minimum = minimum
        self.maximum = maximum
        self.kind = kind

    def convert(self, value, path, ctx):
        accepted = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, accepted):
            wanted = "an integer" if self.kind is int else "a number"
            raise ConfigError(f"must be {wanted}, got {_type_name(value)}", path)
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"must be at least {self.minimum}, got {value}", path)
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"must be at most {self.maximum}, got {value}", path)
        return self.kind(value)


class Bool(Field):
    """C{true} or C{false}."""

    def convert(self, value, path, ctx):
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, got {_type_name(value)}", path)
        return value


class StrList(Field):
    """An array of strings, each checked by C{item} when given."""

    def __init__(self, default=REQUIRED, item: Callable[[str], str | None] | None = None, doc=""):
        super().__init__(default, doc)
        self.item = item

    def convert(self, value, path, ctx):
        if not isinstance(value, list):
            raise ConfigError(f"must be an array of strings, got {_type_name(value)}", path)
        for index, entry in enumerate(value):
            if not isinstance(entry, str):
                raise ConfigError(
                    f"must be an array of strings; item {index} is {_type_name(entry)}", path
                )
            if self.item is not None:
                problem = self.item(entry)
                if problem:
                    raise ConfigError(f"item {index} ({entry!r}): {problem}", path)
        return list(value)

    def missing(self, path, ctx):
        return list(self.default)


class FilePath(Str):
    """
    A file or directory name; relative names are relative to the directory of
    the config file.  An empty string means "not set" and reads as C{None}.
    """

    def convert(self, value, path, ctx):
        value = super().convert(value, path, ctx)
        if not value:
            return None
        return os.path.normpath(os.path.join(ctx.base, os.path.expanduser(value)))

    def missing(self, path, ctx):
        if not self.default:
            return None
        return os.path.normpath(os.path.join(ctx.base, self.default))


def check_host(value: str) -> str | None:
    """A host name or IP address usable in a certificate, or why not."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if len(value) > 253 or not re.match(
        r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)"
        r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$",
        value,
    ):
        return "not a host name or IP address"
    return None


def check_host_port(value: str) -> str | None:
    """C{HOST:PORT} with a host usable in a certificate, or why not."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return "must be HOST:PORT"
    return check_host(host.strip("[]"))


class ArgsField(Field):
    """A table of free-form settings (whatever TOML holds), read by game code."""

    def convert(self, value, path, ctx):
        if not isinstance(value, dict):
            raise ConfigError(f"must be a table, got {_type_name(value)}", path)
        return value

    def missing(self, path, ctx):
        return {}


class Table(Field):
    """A nested table read by a L{Section} subclass; absent means all defaults."""

    def __init__(self, section: type[Section], doc=""):
        super().__init__(None, doc)
        self.section = section

    def convert(self, value, path, ctx):
        return self.section(value, path, ctx)

    def missing(self, path, ctx):
        return self.section({}, path, ctx)


class Tables(Field):
    """A table of named tables (C{[processes.NAME]}), each read by C{section}."""

    def __init__(self, section: type[Section], name_pattern=None, name_rule="", doc=""):
        super().__init__({}, doc)
        self.section = section
        self.name_pattern = re.compile(name_pattern) if name_pattern else None
        self.name_rule = name_rule

    def convert(self, value, path, ctx):
        if not isinstance(value, dict):
            raise ConfigError(f"must be a table, got {_type_name(value)}", path)
        result = {}
        for name, table in value.items():
            if self.name_pattern is not None and not self.name_pattern.match(name):
                raise ConfigError(f"bad name: {self.name_rule}", path + (name,))
            result[name] = self.section(table, path + (name,), ctx, name=name)
        return result

    def missing(self, path, ctx):
        return {}


class Section:
    """
    A table of a config file, read into attributes named after its keys.

    Subclasses declare C{fields}, a dict of key name to L{Field}, and may
    override L{check} for rules that involve several keys.  Unknown keys are
    errors: a misspelt option must not be silently ignored.
    """

    fields: ClassVar[dict[str, Field]] = {}

    def __init__(
        self,
        data: Any,
        path: tuple[str, ...] = (),
        ctx: Context | None = None,
        name: str | None = None,
    ):
        if ctx is None:
            ctx = Context(os.getcwd())
        if not isinstance(data, dict):
            raise ConfigError(f"must be a table, got {_type_name(data)}", path)
        self.name = name
        self._path = path
        for key in data:
            if key not in self.fields:
                known = ", ".join(sorted(self.fields)) or "none"
                raise ConfigError(f"unknown key (known keys: {known})", path + (key,))
        for key, field in self.fields.items():
            setattr(self, key, field.read(data, key, path + (key,), ctx))
        self.check()

    def check(self) -> None:
        """Check rules that involve several keys; raise L{ConfigError}."""

    def error(self, key: str, message: str) -> ConfigError:
        """A L{ConfigError} for C{key} of this section."""
        return ConfigError(message, self._path + (key,))
