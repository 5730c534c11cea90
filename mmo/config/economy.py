"""
The C{[economy]} section: the currencies of a deployment, and the item and
shop data files it names, read and cross-checked at start (see
C{docs/economy.md}).

The section is inert until a service uses it: without C{enabled = true} a
deployment runs no economy, but whatever the section names is still
checked, so that a mistake shows before the economy is turned on.

What the files define is returned as frozen records (L{Currency},
L{ItemDef}, L{Vendor}, L{StockLine}): the economy's code reads them and
never changes them.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from mmo.config.schema import (
    REQUIRED,
    ArgsField,
    Bool,
    ConfigError,
    Context,
    Field,
    FilePath,
    Number,
    Section,
    Str,
    Tables,
    _type_name,
)

#: Largest amount, price, stock, weight or limit: what the ledger keeps
#: exactly on both backends (Redis scripts count in doubles).
MAX_AMOUNT = 2**50

#: A currency's name (C{[economy.currencies.NAME]}); part of the ledger's
#: asset names (C{c:NAME}).
CURRENCY_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

#: An item's id; part of the ledger's asset names (C{i:ID}).
ITEM_ID = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

#: A vendor's name (C{[shops.NAME]}); part of the ledger's account names.
VENDOR_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

#: The inventory limits a deployment may choose.
INVENTORY_KINDS = ("slots", "weight")

_NAME_RULE = "a-z, 0-9, '_' and '-', starting with a letter"


@dataclass(frozen=True)
class Currency:
    """
    One currency.  Amounts are integers of its minor unit everywhere.

    @ivar name: Its name (the ledger's asset C{c:NAME}).
    @ivar decimals: Digits after the point when an amount is shown
        (C{decimals = 2}: 1234 shows as 12.34); display only.
    @ivar credit: How far below zero a player's balance may go.
    @ivar supply_alarm: The largest growth of the supply per hour, a
        fraction (0.1: 10%), before the metrics raise an alarm.
    @ivar start: What a new player's wallet holds.
    """

    name: str
    decimals: int
    credit: int
    supply_alarm: float
    start: int


@dataclass(frozen=True)
class ItemDef:
    """
    One item definition of the item data file.

    @ivar id: Its id (a stackable item's ledger asset is C{i:ID}).
    @ivar name: What players see.
    @ivar stackable: Held as a count (C{True}) or as unique instances.
    @ivar max_stack: Units per inventory slot (stackable items); C{None} for
        unique items, one per slot.
    @ivar weight: Weight units per unit held.
    @ivar props: The game's properties of the item, read-only.
    """

    id: str
    name: str
    stackable: bool
    max_stack: int | None
    weight: int
    props: MappingProxyType


@dataclass(frozen=True)
class StockLine:
    """
    One item a vendor deals in.

    @ivar item: The item's id.
    @ivar price: What a player pays for one, minor units.
    @ivar sell: What the vendor pays a player for one (at most C{price}), or
        C{None}: it does not buy the item.
    @ivar stock: How many it has to sell, or C{None}: unlimited.
    """

    item: str
    price: int
    sell: int | None
    stock: int | None


@dataclass(frozen=True)
class Vendor:
    """
    One vendor of the shop data file.

    @ivar id: Its name in the file (C{[shops.ID]}).
    @ivar name: What players see.
    @ivar currency: The currency of its prices.
    @ivar stock: Its stock lines, in the file's order.
    """

    id: str
    name: str
    currency: str
    stock: tuple[StockLine, ...]

    def line(self, item: str) -> StockLine | None:
        """The stock line of C{item}, or C{None}."""
        for line in self.stock:
            if line.item == item:
                return line
        return None


class SectionList(Field):
    """
    An array of tables (C{[[items]]}), each read by C{section}; errors name
    the entry as C{key[index]} (from 0).
    """

    def __init__(self, section: type[Section], default=(), doc=""):
        super().__init__(default, doc)
        self.section = section

    def convert(self, value, path, ctx):
        if not isinstance(value, list):
            raise ConfigError(f"must be an array of tables, got {_type_name(value)}", path)
        where = path[:-1]
        return [
            self.section(entry, where + (f"{path[-1]}[{index}]",), ctx)
            for index, entry in enumerate(value)
        ]

    def missing(self, path, ctx):
        return list(self.default)


def _amount(default=REQUIRED, minimum=0, doc=""):
    return Number(default, minimum=minimum, maximum=MAX_AMOUNT, doc=doc)


class CurrencySection(Section):
    """One C{[economy.currencies.NAME]} table; read into a L{Currency}."""

    fields = {
        "decimals": Number(0, minimum=0, maximum=18, doc="Digits shown after the point."),
        "credit": _amount(0, doc="How far below zero a player's balance may go, minor units."),
        "supply_alarm": Number(
            0.10,
            minimum=0,
            maximum=1000,
            kind=float,
            doc="Largest growth of the supply per hour (a fraction) before the alarm.",
        ),
        "start": _amount(0, doc="What a new player's wallet holds, minor units."),
    }

    def currency(self) -> Currency:
        return Currency(self.name, self.decimals, self.credit, self.supply_alarm, self.start)


class ItemSection(Section):
    """One C{[[items]]} entry of the item data file; read into an L{ItemDef}."""

    fields = {
        "id": Str(REQUIRED, pattern=ITEM_ID.pattern),
        "name": Str(REQUIRED),
        "stackable": Bool(False),
        "max_stack": _amount(None, minimum=1),
        "weight": _amount(0),
        "props": ArgsField({}),
    }

    def check(self):
        if not self.name:
            raise self.error("name", "must not be empty")
        if self.stackable and self.max_stack is None:
            raise self.error("max_stack", "is required for a stackable item")
        if not self.stackable and self.max_stack is not None:
            raise self.error("max_stack", "a unique item has no max_stack (one per slot)")

    def item(self) -> ItemDef:
        return ItemDef(
            self.id,
            self.name,
            self.stackable,
            self.max_stack,
            self.weight,
            MappingProxyType(dict(self.props)),
        )


class StockLineSection(Section):
    """One C{[[shops.NAME.stock]]} entry; read into a L{StockLine}."""

    fields = {
        "item": Str(REQUIRED),
        "price": _amount(REQUIRED, minimum=1),
        "sell": _amount(None),
        "stock": _amount(None),
    }

    def check(self):
        if self.sell is not None and self.sell > self.price:
            raise self.error(
                "sell",
                f"must not exceed price ({self.price}): "
                "buying and selling back would mint currency",
            )

    def line(self) -> StockLine:
        return StockLine(self.item, self.price, self.sell, self.stock)


class VendorSection(Section):
    """One C{[shops.NAME]} table of the shop data file; read into a L{Vendor}."""

    fields = {
        "name": Str(REQUIRED),
        "currency": Str(REQUIRED),
        "stock": SectionList(StockLineSection),
    }


class ItemsFile(Section):
    """The item data file: C{[[items]]} entries."""

    fields = {"items": SectionList(ItemSection)}


class ShopsFile(Section):
    """The shop data file: C{[shops.NAME]} tables."""

    fields = {
        "shops": Tables(VendorSection, name_pattern=VENDOR_NAME.pattern, name_rule=_NAME_RULE)
    }


def read_data_file(path: str, key: tuple[str, ...], section: type[Section]) -> Section:
    """
    Read the data file at C{path} with C{section}.

    @param key: The config's key that names the file: a file that cannot be
        read is reported there, in the config file.
    @raise ConfigError: The file cannot be read (the error names C{key}),
        is not TOML or is wrong (the error names the data file).
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}", key) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", file=path) from None
    try:
        return section(data, (), Context(os.path.dirname(path)))
    except ConfigError as e:
        e.file = path
        raise


class EconomySection(Section):
    """
    The C{[economy]} table and the data files it names, cross-checked.

    @ivar currencies: Currency name to L{Currency}, in the file's order.
    @ivar item_defs: Item id to L{ItemDef}, in the item file's order.
    @ivar vendors: Vendor name to L{Vendor}, in the shop file's order.
    """

    fields = {
        "enabled": Bool(False, doc="Whether the deployment runs an economy."),
        "items": FilePath("", doc="The item data file (TOML)."),
        "shops": FilePath("", doc="The shop data file (TOML)."),
        "inventory": Str("slots", choices=INVENTORY_KINDS, doc="What limits an inventory."),
        "inventory_limit": Number(
            40, minimum=1, maximum=MAX_AMOUNT, doc="Slots, or weight units, per inventory."
        ),
        "metrics_interval": Number(
            60.0,
            minimum=1,
            maximum=86400,
            kind=float,
            doc="Seconds between two computations of the money-supply metrics.",
        ),
        "metrics_history": Number(
            60, minimum=1, maximum=100000, doc="Intervals of metrics kept for mmo-admin."
        ),
        "trade_lease": Number(
            10.0,
            minimum=1,
            maximum=600,
            kind=float,
            doc="Seconds the economy process serving trades holds them unrenewed: how "
            "soon a standby economy process takes over from one that died.",
        ),
        "currencies": Tables(
            CurrencySection, name_pattern=CURRENCY_NAME.pattern, name_rule=_NAME_RULE
        ),
    }

    currencies: dict[str, Any]
    item_defs: dict[str, ItemDef]
    vendors: dict[str, Vendor]

    def check(self):
        if self.enabled and not self.currencies:
            raise ConfigError(
                "an enabled economy needs at least one currency", self._path + ("currencies",)
            )
        self.currencies = {name: table.currency() for name, table in self.currencies.items()}
        self.item_defs = self._read_items() if self.items else {}
        self.vendors = self._read_shops() if self.shops else {}

    def _read_items(self) -> dict[str, ItemDef]:
        read = read_data_file(self.items, self._path + ("items",), ItemsFile)
        found: dict[str, ItemDef] = {}
        for index, entry in enumerate(read.items):
            if entry.id in found:
                first = list(found).index(entry.id)
                raise ConfigError(
                    f"{entry.id!r} is defined twice (first at items[{first}])",
                    (f"items[{index}]", "id"),
                    self.items,
                )
            found[entry.id] = entry.item()
        return found

    def _read_shops(self) -> dict[str, Vendor]:
        read = read_data_file(self.shops, self._path + ("shops",), ShopsFile)
        vendors = {}
        for name, table in read.shops.items():
            where = ("shops", name)
            if table.currency not in self.currencies:
                raise ConfigError(
                    f"no currency {table.currency!r} in the config's [economy.currencies] "
                    f"(currencies: {', '.join(self.currencies) or 'none'})",
                    where + ("currency",),
                    self.shops,
                )
            seen: set[str] = set()
            for index, line in enumerate(table.stock):
                key = where + (f"stock[{index}]", "item")
                if line.item not in self.item_defs:
                    raise ConfigError(
                        f"no item {line.item!r} in the item file "
                        f"({self.items or 'none: [economy] items is not set'})",
                        key,
                        self.shops,
                    )
                if line.item in seen:
                    raise ConfigError(f"{line.item!r} has a stock line already", key, self.shops)
                seen.add(line.item)
            vendors[name] = Vendor(
                name, table.name, table.currency, tuple(line.line() for line in table.stock)
            )
        return vendors
