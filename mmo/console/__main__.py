"""
C{python -m mmo.console --config FILE}: print the address of the admin
console of every manager of the config that serves one, and how to log in
(what C{make cluster} shows).
"""

from __future__ import annotations

import argparse
import os
import sys

from mmo.config import ConfigError, load
from mmo.console import console_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmo.console", description=__doc__)
    parser.add_argument("--config", required=True, help="the deployment's config file")
    options = parser.parse_args(argv)
    admin = os.path.join(os.path.dirname(sys.executable), "mmo-admin")
    admin = os.path.relpath(admin) if os.path.exists(admin) else "mmo-admin"
    try:
        config = load(options.config)
        for process in config.processes.values():
            if process.kind == "manager" and process.console:
                print(
                    f"The admin console of {process.name}: {console_url(config, process)} "
                    f"(log in with a one-time link: {admin} --config {options.config} console; "
                    "docs/console.md)"
                )
    except ConfigError as e:
        print(f"mmo: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
