"""
Every config option is documented: each key of every section appears in
docs/configuration.md, and the commented standalone config sets each one.
"""

import os

from twisted.trial import unittest

from mmo import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def keys(section_class, prefix=()):
    """Every (path, key) of C{section_class} and its nested sections."""
    for name, field in section_class.fields.items():
        if isinstance(field, (config.Table, config.Tables)):
            inner = prefix + ((name,) if isinstance(field, config.Table) else (name, "NAME"))
            yield from keys(field.section, inner)
        else:
            yield prefix, name


class DocsTests(unittest.TestCase):
    def test_every_option_documented(self):
        with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
            text = f.read()
        for path, key in keys(config.Config):
            heading = f"## `[{'.'.join(path)}]`"
            self.assertIn(heading, text)
            section = text.split(heading, 1)[1].split("\n## ", 1)[0]
            self.assertIn(f"| `{key}` |", section, f"{'.'.join(path)}.{key}")

    def test_standalone_config_shows_every_option(self):
        with open(os.path.join(ROOT, "conf", "standalone.toml")) as f:
            text = f.read()
        for _path, key in keys(config.Config):
            # Shown set, or commented out where the section is optional.
            self.assertRegex(text, rf"(?m)^(# )?{key} = ", key)

    def test_every_error_code_documented(self):
        from mmo.wire import codes

        with open(os.path.join(ROOT, "docs", "protocol.md")) as f:
            text = f.read()
        for code in codes.DESCRIPTIONS:
            self.assertIn(f"`{code}`", text)


class LinkTests(unittest.TestCase):
    def test_relative_links_resolve(self):
        """Every relative link in the README and docs points at a file that exists."""
        import glob
        import re

        documents = [os.path.join(ROOT, "README.md")]
        documents += glob.glob(os.path.join(ROOT, "docs", "*.md"))
        documents += glob.glob(os.path.join(ROOT, "bench", "*.md"))
        for document in documents:
            with open(document) as f:
                text = f.read()
            for match in re.finditer(r"\]\(([^)#\s]+)(#[^)]*)?\)", text):
                target = match.group(1)
                if "://" in target:
                    continue
                path = os.path.normpath(os.path.join(os.path.dirname(document), target))
                self.assertTrue(os.path.exists(path), f"{document}: {target}")
