"""
Configuration: TOML files read into small typed, validated section classes.

A deployment is described by one TOML file.  Every table of the file is read
by a L{Section} subclass that declares its keys as L{Field}s; reading checks
every key and value, fills in the defaults and raises one L{ConfigError} that
names the file, the dotted key and the reason::

    conf/standalone.toml: wire.max_frame_size: must be at least 256, got 3

Game teams add their own sections by subclassing L{Config} and adding fields
(see C{docs/configuration.md}).

One module per area; every name below is importable from C{mmo.config}:

  - L{mmo.config.schema}: L{ConfigError}, L{Section} and the field kinds
    (L{Str}, L{Number}, L{Bool}, L{StrList}, L{FilePath}, L{Table},
    L{Tables}).
  - L{mmo.config.listeners}: the L{ServerEndpoint} field,
    L{listening_address} and C{[listeners]}.
  - L{mmo.config.deployment}: C{[deployment]}, C{[logging]}, C{[wire]},
    C{[tls]}.
  - L{mmo.config.backends}: C{[store]}, C{[redis]}, C{[bus]}.
  - L{mmo.config.login}, L{mmo.config.gateway}, L{mmo.config.lobby},
    L{mmo.config.chat}, L{mmo.config.manager}: the section of each service.
  - L{mmo.config.ladder}: C{[ladders.NAME]}, one ranked ladder each.
  - L{mmo.config.economy}: C{[economy]}, its currencies and the item and
    shop data files it names.
  - L{mmo.config.web}: C{[web]}, the browser demo on the WebSocket port.
  - L{mmo.config.processes}: C{[processes.NAME]} and C{[realms.NAME]}.
  - L{mmo.config.jobs}: C{[jobs.NAME]}, the scheduled jobs of the config.
  - L{mmo.config.world}: C{[world]}, checked on the region grid of
    L{mmo.config.world_geometry}, which the zones' map is built on too.
  - L{mmo.config.root}: L{Config}, the whole file and its deployment-wide
    checks, and L{load}.
"""

from mmo.config.backends import BusSection, RedisSection, StoreSection
from mmo.config.chat import ChatSection
from mmo.config.deployment import DeploymentSection, LoggingSection, TLSSection, WireSection
from mmo.config.economy import Currency, EconomySection, ItemDef, StockLine, Vendor
from mmo.config.gateway import FloodClassSection, GatewaySection
from mmo.config.ladder import LadderSection
from mmo.config.listeners import (
    ListenersSection,
    ListeningAddress,
    ServerEndpoint,
    listening_address,
)
from mmo.config.lobby import LobbySection
from mmo.config.login import LoginSection
from mmo.config.manager import ManagerSection
from mmo.config.processes import (
    PROCESS_KINDS,
    PROCESS_NAME,
    RESERVED_NAMES,
    ProcessSection,
    RealmSection,
    check_process_name,
)
from mmo.config.root import Config, load
from mmo.config.schema import (
    REQUIRED,
    Bool,
    ConfigError,
    Context,
    Field,
    FilePath,
    Number,
    Section,
    Str,
    StrList,
    Table,
    Tables,
    check_host,
    check_host_port,
)
from mmo.config.web import WebSection
from mmo.config.world import REGION_NAME, Point, RegionSection, WorldSection

__all__ = [
    "PROCESS_KINDS",
    "PROCESS_NAME",
    "REGION_NAME",
    "REQUIRED",
    "RESERVED_NAMES",
    "Bool",
    "BusSection",
    "ChatSection",
    "Config",
    "ConfigError",
    "Currency",
    "Context",
    "DeploymentSection",
    "EconomySection",
    "Field",
    "FilePath",
    "FloodClassSection",
    "GatewaySection",
    "ItemDef",
    "LadderSection",
    "ListeningAddress",
    "ListenersSection",
    "LobbySection",
    "LoggingSection",
    "LoginSection",
    "ManagerSection",
    "Number",
    "Point",
    "ProcessSection",
    "RealmSection",
    "RedisSection",
    "RegionSection",
    "Section",
    "ServerEndpoint",
    "StockLine",
    "StoreSection",
    "Str",
    "StrList",
    "TLSSection",
    "Vendor",
    "Table",
    "Tables",
    "WebSection",
    "WireSection",
    "WorldSection",
    "check_host",
    "check_host_port",
    "check_process_name",
    "listening_address",
    "load",
]
