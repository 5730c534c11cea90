"""
Scenarios and their parameters, from the command line or a scenario file:

    scenario = "border-walk"
    move_interval = 0.5
    span = 100.0

A scenario file is TOML: C{scenario} names the scenario, the other keys
are its parameters (L{KEYS}).  A key the scenario does not have, or a bad
value, is a L{ScenarioError} naming the file and the key.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field

#: The scenarios, in the order the help lists them.
SCENARIOS = ("idle", "chat", "wander", "border-walk", "login-storm", "ranked", "trader")

#: The scenarios played in the lobby: the bots choose a character and do
#: not enter the world.
LOBBY = ("ranked", "trader")


@dataclass(frozen=True)
class Key:
    """One parameter: its default, bounds, kind and the scenarios that have it."""

    default: object
    minimum: float | None
    maximum: float | None
    kind: type
    scenarios: tuple[str, ...]
    doc: str


MOVING = ("wander", "border-walk")

KEYS: dict[str, Key] = {
    "request_timeout": Key(
        10.0, 0.1, 600.0, float, SCENARIOS, "Seconds a request may take (else: timeout)."
    ),
    "ping_interval": Key(5.0, 0.05, 3600.0, float, ("idle",), "Seconds between pings of a bot."),
    "move_interval": Key(0.5, 0.02, 60.0, float, MOVING, "Seconds between moves of a bot."),
    "speed": Key(
        0.5,
        0.05,
        0.9,
        float,
        MOVING,
        "A bot's step, as a fraction of the longest legal one (at most 0.9).",
    ),
    "turn_interval": Key(
        3.0, 0.1, 3600.0, float, ("wander",), "Seconds a wandering bot keeps its heading, about."
    ),
    "span": Key(
        150.0,
        0.0,
        1e9,
        float,
        ("border-walk",),
        "How far each side of the border a bot walks (at least hysteresis + 10).",
    ),
    "spacing": Key(
        0.0,
        0.0,
        1e9,
        float,
        ("border-walk",),
        "How far apart the bots' lanes are along the border, on the stretch nearest the "
        "spawn (0: spread evenly along every border).",
    ),
    "weave": Key(
        15.0,
        0.0,
        1e9,
        float,
        ("border-walk",),
        "How far each side of the border a bot zigzags on its way to its lane "
        "(0: straight to the lane; else at least hysteresis + 5).",
    ),
    "chat_interval": Key(10.0, 0.1, 3600.0, float, ("chat",), "Seconds between a bot's messages."),
    "channel": Key("world", None, None, str, ("chat",), "The channel the bots talk on."),
    "concurrency": Key(16, 1, 10000, int, ("login-storm",), "Login cycles in flight at once."),
    "ladder": Key("duel", None, None, str, ("ranked",), "The ladder the bots queue on."),
    "mode": Key("1v1", None, None, str, ("ranked",), "The ladder's mode they queue for."),
    "think": Key(
        0.5,
        0.0,
        60.0,
        float,
        LOBBY,
        "Seconds a bot takes for a move of its game, at most (a throw, an offer, a confirmation).",
    ),
    "requeue_delay": Key(
        1.0, 0.0, 600.0, float, ("ranked",), "Seconds between a result and the next queue join."
    ),
    "shop": Key(
        "*",
        None,
        None,
        str,
        ("trader",),
        "The vendor the bots shop at; '*': each visit, one of shop.list at random.",
    ),
    "shop_every": Key(
        2.0, 0.05, 3600.0, float, ("trader",), "Seconds between a bot's visits to the shop."
    ),
    "sell_chance": Key(
        0.25, 0.0, 1.0, float, ("trader",), "The chance a visit sells something back."
    ),
    "trade_every": Key(
        3.0,
        0.05,
        3600.0,
        float,
        ("trader",),
        "Seconds from the end of a pair's trade to the next one it opens.",
    ),
}


class ScenarioError(Exception):
    """A scenario or its file is wrong: C{str()} names the file and the key."""


@dataclass
class Scenario:
    """A scenario and its parameters (every key of L{KEYS}, defaults filled in)."""

    name: str
    params: dict = field(default_factory=dict)

    def __getattr__(self, key):
        params = self.__dict__.get("params", {})
        if key in params:
            return params[key]
        raise AttributeError(key)


def make(name: str, values: dict | None = None, where: str = "") -> Scenario:
    """
    The scenario C{name} with C{values} over the defaults; C{where} (a file
    name) prefixes errors.
    """
    prefix = f"{where}: " if where else ""
    if name not in SCENARIOS:
        raise ScenarioError(
            f"{prefix}scenario: unknown scenario {name!r} (one of: {', '.join(SCENARIOS)})"
        )
    params = {key: spec.default for key, spec in KEYS.items()}
    for key, value in (values or {}).items():
        spec = KEYS.get(key)
        if spec is None or name not in spec.scenarios:
            known = sorted(k for k, s in KEYS.items() if name in s.scenarios)
            raise ScenarioError(
                f"{prefix}{key}: not a key of scenario {name!r} (its keys: {', '.join(known)})"
            )
        params[key] = _check(spec, value, f"{prefix}{key}")
    return Scenario(name, params)


def _check(spec: Key, value, where: str):
    if spec.kind is str:
        if not isinstance(value, str) or not value:
            raise ScenarioError(f"{where}: must be a non-empty string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{where}: must be a number, got {value!r}")
    if spec.kind is int and not isinstance(value, int):
        raise ScenarioError(f"{where}: must be a whole number, got {value!r}")
    if not math.isfinite(value):
        raise ScenarioError(f"{where}: must be finite, got {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        raise ScenarioError(f"{where}: must be at least {spec.minimum:g}, got {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise ScenarioError(f"{where}: must be at most {spec.maximum:g}, got {value!r}")
    return spec.kind(value)


def load(path: str) -> Scenario:
    """Read a scenario file; L{ScenarioError} names the file and the key if it is wrong."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror or e}")
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}")
    name = data.pop("scenario", None)
    if name is None:
        raise ScenarioError(f"{path}: scenario: missing (one of: {', '.join(SCENARIOS)})")
    if not isinstance(name, str):
        raise ScenarioError(f"{path}: scenario: must be a string, got {name!r}")
    return make(name, data, path)
