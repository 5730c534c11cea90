"""
Tests of C{[economy]} (L{mmo.config.economy}): its keys and defaults, the
item and shop data files it names, and every error, which names the file,
the key and the reason.
"""

from __future__ import annotations

import operator
import os
import textwrap

from twisted.trial import unittest

from mmo import config
from mmo.config import ConfigError, Currency, ItemDef, StockLine, Vendor
from tests.support import write_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROCESSES = '\n[processes.zone-1]\nkind = "zone"\n'

ECONOMY = """
[economy]
enabled = true
items = "items.toml"
shops = "shops.toml"

[economy.currencies.gold]
decimals = 2

[economy.currencies.gems]
"""

ITEMS = """
[[items]]
id = "potion"
name = "Potion"
stackable = true
max_stack = 20
weight = 1
props = { heals = 50 }

[[items]]
id = "sword"
name = "Sword"
weight = 8
"""

SHOPS = """
[shops.smith]
name = "Smith"
currency = "gold"

[[shops.smith.stock]]
item = "sword"
price = 100
sell = 40
stock = 3

[[shops.smith.stock]]
item = "potion"
price = 5
"""


class EconomyConfigTests(unittest.TestCase):
    def write(self, economy=ECONOMY, items=ITEMS, shops=SHOPS):
        """A config with C{economy}, next to the data files given (C{None}: none)."""
        path = write_config(self, economy + PROCESSES)
        directory = os.path.dirname(path)
        for name, text in (("items.toml", items), ("shops.toml", shops)):
            if text is not None:
                with open(os.path.join(directory, name), "w") as f:
                    f.write(textwrap.dedent(text))
        return path

    def load(self, **files):
        return config.load(self.write(**files)).economy

    def assertConfigError(self, key, *fragments, in_file=None, **files):
        """
        Loading fails naming the file (C{in_file} of the config's directory,
        else the config file), C{key} and C{fragments}.
        """
        path = self.write(**files)
        where = os.path.join(os.path.dirname(os.path.abspath(path)), in_file) if in_file else path
        message = str(self.assertRaises(ConfigError, config.load, path))
        self.assertTrue(message.startswith(f"{where}: {key}: "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_defaults(self):
        """Without [economy], there is no economy, and nothing is read."""
        economy = config.load(write_config(self, PROCESSES)).economy
        self.assertFalse(economy.enabled)
        self.assertEqual((economy.items, economy.shops), (None, None))
        self.assertEqual((economy.inventory, economy.inventory_limit), ("slots", 40))
        self.assertEqual((economy.metrics_interval, economy.metrics_history), (60.0, 60))
        self.assertEqual((economy.currencies, economy.item_defs, economy.vendors), ({}, {}, {}))

    def test_currency_defaults(self):
        gems = self.load().currencies["gems"]
        self.assertEqual(gems, Currency("gems", 0, 0, 0.10, 0))

    def test_keys(self):
        economy = self.load(
            economy=ECONOMY.replace(
                "decimals = 2",
                "decimals = 2\ncredit = 500\nsupply_alarm = 0.25\nstart = 1000",
            ).replace(
                "[economy.currencies.gold]",
                'inventory = "weight"\ninventory_limit = 300\nmetrics_interval = 30\n'
                "metrics_history = 120\n\n[economy.currencies.gold]",
            )
        )
        self.assertTrue(economy.enabled)
        self.assertEqual(list(economy.currencies), ["gold", "gems"])
        self.assertEqual(economy.currencies["gold"], Currency("gold", 2, 500, 0.25, 1000))
        self.assertEqual((economy.inventory, economy.inventory_limit), ("weight", 300))
        self.assertEqual((economy.metrics_interval, economy.metrics_history), (30.0, 120))

    def test_items(self):
        items = self.load().item_defs
        self.assertEqual(list(items), ["potion", "sword"])
        potion, sword = items["potion"], items["sword"]
        self.assertEqual(
            (potion.name, potion.stackable, potion.max_stack, potion.weight),
            ("Potion", True, 20, 1),
        )
        self.assertEqual(dict(potion.props), {"heals": 50})
        self.assertEqual(
            (sword.stackable, sword.max_stack, sword.weight, dict(sword.props)),
            (False, None, 8, {}),
        )

    def test_shops(self):
        smith = self.load().vendors["smith"]
        self.assertEqual(
            smith,
            Vendor(
                "smith",
                "Smith",
                "gold",
                (StockLine("sword", 100, 40, 3), StockLine("potion", 5, None, None)),
            ),
        )
        self.assertEqual(smith.line("potion").price, 5)
        self.assertIsNone(smith.line("shield"))

    def test_records_are_frozen(self):
        economy = self.load()
        sword = economy.item_defs["sword"]
        self.assertIsInstance(sword, ItemDef)
        self.assertRaises(AttributeError, setattr, sword, "weight", 0)
        self.assertRaises(
            TypeError, operator.setitem, economy.item_defs["potion"].props, "heals", 1
        )
        self.assertRaises(AttributeError, setattr, economy.currencies["gold"], "credit", 9)
        self.assertRaises(AttributeError, setattr, economy.vendors["smith"], "currency", "x")

    def test_disabled_still_checked(self):
        """A disabled economy needs no currency, but what it names is checked."""
        economy = self.load(economy='[economy]\nitems = "items.toml"\n', shops=None)
        self.assertFalse(economy.enabled)
        self.assertEqual(list(economy.item_defs), ["potion", "sword"])
        self.assertConfigError(
            "items[1].name",
            "is required",
            in_file="items.toml",
            economy='[economy]\nitems = "items.toml"\n',
            items='[[items]]\nid = "a"\nname = "A"\n[[items]]\nid = "b"\n',
        )

    def test_data_files_optional(self):
        """An economy of currencies only: no item file, no shop file."""
        economy = self.load(economy="[economy]\nenabled = true\n[economy.currencies.gold]\n")
        self.assertEqual((economy.item_defs, economy.vendors), ({}, {}))

    def test_example_files_load(self):
        """conf/standalone.toml and conf/cluster.toml name the example data files."""
        for name in ("standalone.toml", "cluster.toml"):
            economy = config.load(os.path.join(ROOT, "conf", name)).economy
            self.assertTrue(economy.enabled, name)
            self.assertIn("gold", economy.currencies)
            self.assertIn("iron-sword", economy.item_defs)
            self.assertEqual(economy.vendors["smith"].currency, "gold")
            self.assertTrue(
                all(
                    line.item in economy.item_defs
                    for v in economy.vendors.values()
                    for line in v.stock
                )
            )

    def test_config_errors(self):
        """Each bad value of the config fails at load, naming the config, the key and why."""
        enabled = "[economy]\nenabled = true\n"
        gold = "[economy.currencies.gold]\n"
        bad = [
            (enabled, "economy.currencies", "at least one currency"),
            ('[economy]\nenabled = "yes"\n', "economy.enabled", "true or false"),
            ('[economy]\ninventory = "bags"\n', "economy.inventory", "one of"),
            ("[economy]\ninventory_limit = 0\n", "economy.inventory_limit", "at least 1"),
            ("[economy]\nmetrics_interval = 0.5\n", "economy.metrics_interval", "at least 1"),
            ("[economy]\nmetrics_history = 0\n", "economy.metrics_history", "at least 1"),
            ("[economy]\nhistory = 3\n", "economy.history", "unknown key"),
            ("[economy.currencies.Gold]\n", "economy.currencies.Gold", "bad name"),
            ('[economy.currencies."c:x"]\n', "economy.currencies.c:x", "bad name"),
            (gold + "decimals = 19\n", "economy.currencies.gold.decimals", "at most 18"),
            (gold + "credit = -1\n", "economy.currencies.gold.credit", "at least 0"),
            (gold + "credit = 1.5\n", "economy.currencies.gold.credit", "an integer"),
            (gold + f"start = {2**51}\n", "economy.currencies.gold.start", "at most"),
            (gold + "supply_alarm = -0.1\n", "economy.currencies.gold.supply_alarm", "at least"),
            (gold + "rate = 1\n", "economy.currencies.gold.rate", "unknown key"),
            ('[economy]\nitems = "missing.toml"\n', "economy.items", "cannot read", "missing"),
            ('[economy]\nshops = "missing.toml"\n', "economy.shops", "cannot read", "missing"),
        ]
        for text, key, *fragments in bad:
            self.assertConfigError(key, *fragments, economy=text, items=None, shops=None)

    def test_item_file_errors(self):
        """Each bad item fails at load, naming the item file, the item's key and why."""
        sword = '[[items]]\nid = "sword"\nname = "Sword"\n'
        bad = [
            ("items = 3\n", "items", "array of tables"),
            ("[items]\n", "items", "array of tables"),
            ("weapons = []\n", "weapons", "unknown key"),
            ("[[items]]\nname = 'X'\n", "items[0].id", "is required"),
            (sword + '[[items]]\nid = "Bad Id"\nname = "X"\n', "items[1].id", "does not match"),
            (sword + '[[items]]\nid = "c:x"\nname = "X"\n', "items[1].id", "does not match"),
            (sword + sword, "items[1].id", "'sword' is defined twice", "items[0]"),
            ('[[items]]\nid = "a"\nname = ""\n', "items[0].name", "must not be empty"),
            (
                '[[items]]\nid = "a"\nname = "A"\nstackable = true\n',
                "items[0].max_stack",
                "required for a stackable",
            ),
            (
                '[[items]]\nid = "a"\nname = "A"\nmax_stack = 5\n',
                "items[0].max_stack",
                "a unique item has no max_stack",
            ),
            (
                sword + '[[items]]\nid = "a"\nname = "A"\nstackable = true\nmax_stack = 0\n',
                "items[1].max_stack",
                "at least 1",
            ),
            ('[[items]]\nid = "a"\nname = "A"\nweight = -1\n', "items[0].weight", "at least 0"),
            ('[[items]]\nid = "a"\nname = "A"\nprops = 3\n', "items[0].props", "a table"),
            ('[[items]]\nid = "a"\nname = "A"\ncolour = 3\n', "items[0].colour", "unknown key"),
        ]
        for text, key, *fragments in bad:
            self.assertConfigError(key, *fragments, in_file="items.toml", items=text)

    def test_item_file_not_toml(self):
        """A data file that is not TOML: the error names it and where it goes wrong."""
        path = self.write(items="[[items]\n")
        message = str(self.assertRaises(ConfigError, config.load, path))
        items = os.path.join(os.path.dirname(os.path.abspath(path)), "items.toml")
        self.assertTrue(message.startswith(f"{items}: not valid TOML: "), message)

    def test_shop_file_errors(self):
        """Each bad vendor fails at load, naming the shop file, the key and why."""
        smith = '[shops.smith]\nname = "Smith"\ncurrency = "gold"\n'
        line = "[[shops.smith.stock]]\n"
        bad = [
            ('[shops.Smith]\nname = "S"\ncurrency = "gold"\n', "shops.Smith", "bad name"),
            ('[shops.smith]\ncurrency = "gold"\n', "shops.smith.name", "is required"),
            ('[shops.smith]\nname = "S"\n', "shops.smith.currency", "is required"),
            (
                '[shops.smith]\nname = "S"\ncurrency = "silver"\n',
                "shops.smith.currency",
                "no currency 'silver'",
                "gold, gems",
            ),
            (smith + "stock = 3\n", "shops.smith.stock", "array of tables"),
            (smith + line + "price = 1\n", "shops.smith.stock[0].item", "is required"),
            (smith + line + 'item = "sword"\n', "shops.smith.stock[0].price", "is required"),
            (
                smith
                + line
                + 'item = "sword"\nprice = 1\n'
                + line
                + 'item = "shield"\nprice = 1\n',
                "shops.smith.stock[1].item",
                "no item 'shield'",
                "items.toml",
            ),
            (
                smith + line + 'item = "sword"\nprice = 1\n' + line + 'item = "sword"\nprice = 2\n',
                "shops.smith.stock[1].item",
                "'sword' has a stock line already",
            ),
            (
                smith + line + 'item = "sword"\nprice = 0\n',
                "shops.smith.stock[0].price",
                "at least 1",
            ),
            (
                smith + line + 'item = "sword"\nprice = 10\nsell = 11\n',
                "shops.smith.stock[0].sell",
                "must not exceed price (10)",
            ),
            (
                smith + line + 'item = "sword"\nprice = 10\nsell = -1\n',
                "shops.smith.stock[0].sell",
                "at least 0",
            ),
            (
                smith + line + 'item = "sword"\nprice = 10\nstock = -1\n',
                "shops.smith.stock[0].stock",
                "at least 0",
            ),
            (
                smith + line + 'item = "sword"\nprice = "10"\n',
                "shops.smith.stock[0].price",
                "an integer",
            ),
        ]
        for text, key, *fragments in bad:
            self.assertConfigError(key, *fragments, in_file="shops.toml", shops=text)

    def test_shop_items_need_the_item_file(self):
        """A stock line when the config names no item file: no such item."""
        self.assertConfigError(
            "shops.smith.stock[0].item",
            "no item 'sword'",
            "items is not set",
            in_file="shops.toml",
            economy=ECONOMY.replace('items = "items.toml"\n', ""),
        )
