"""
C{python -m mmo.web --config FILE}: print the address of the browser demo
of every process of the config that serves it (what C{make run} shows).
"""

from __future__ import annotations

import argparse
import sys

from mmo.config import ConfigError, load
from mmo.web import demo_url, serves_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmo.web", description=__doc__)
    parser.add_argument("--config", required=True, help="the deployment's config file")
    options = parser.parse_args(argv)
    try:
        config = load(options.config)
    except ConfigError as e:
        print(f"mmo: {e}", file=sys.stderr)
        return 1
    for process in config.processes.values():
        if serves_demo(config, process):
            print(f"The demo game of {process.name}: {demo_url(process)} (docs/demo.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
