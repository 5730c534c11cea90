"""Packaging for mmo, an MMO game server framework on Twisted."""

import os
import re
from pathlib import Path

from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "mmo" / "__init__.py").read_text(), re.M
).group(1)


def extensions() -> list:
    """
    The compiled area-of-interest kernel (mmo/zone/_kernel.pyx), the
    loop of a tick's TLS writes (mmo/_tlswrite.pyx) and the bots' cut of
    a push (mmo/bot/_lazy.pyx); none with MMO_PURE_PYTHON=1, for a
    machine without a C compiler: mmo.zone.aoi then runs its pure-Python
    functions, the same ones, mmo.compat writes each connection as it
    writes any other, and mmo.bot.lazy cuts a push with msgpack's Unpacker.
    """
    if os.environ.get("MMO_PURE_PYTHON") == "1":
        return []
    from Cython.Build import cythonize

    return cythonize(
        [
            Extension("mmo.zone._kernel", ["mmo/zone/_kernel.pyx"]),
            Extension("mmo._tlswrite", ["mmo/_tlswrite.pyx"]),
            Extension("mmo.bot._lazy", ["mmo/bot/_lazy.pyx"]),
        ],
        compiler_directives={"language_level": 3},
        quiet=True,
    )


setup(
    name="mmo",
    version=VERSION,
    description="An MMO game server framework on Twisted",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    # Every package under mmo/, and the plugin files, which go into the
    # installed twisted/plugins/ directory (that directory must never get an
    # __init__.py of ours).
    packages=find_packages(include=["mmo", "mmo.*"]) + ["twisted.plugins"],
    package_data={
        "twisted.plugins": ["mmo_*.py"],
        "mmo.web": ["static/*"],
        "mmo.console": ["static/*"],
    },
    ext_modules=extensions(),
    install_requires=[
        "twisted[tls]>=24.7.0",
        "pyopenssl>=24.0.0",
        "cryptography>=42.0.0",
        "service-identity>=24.1.0",
        "txredisapi>=1.4.10",
        # txredisapi's reply parser in C, which it takes when installed.
        "hiredis>=3.0",
        "msgpack>=1.0.8",
        "argon2-cffi>=23.1.0",
        "autobahn>=23.1.0",
        "openskill>=6.0",
        "prometheus-client>=0.20.0",
    ],
    extras_require={
        "test": ["hypothesis>=6.100.0", "websockets>=15.0"],
        # Cython: make venv also builds the kernel in the source tree, which
        # the tests import (PYTHONPATH=.).
        "dev": ["hypothesis>=6.100.0", "ruff>=0.5.0", "websockets>=15.0", "Cython>=3.0.8"],
        "bench": ["matplotlib>=3.8"],
    },
    entry_points={
        "console_scripts": [
            "mmo-certs = mmo.certs:main",
            "mmo-store = mmo.store.backup:main",
            "mmo-admin = mmo.manager.admin:main",
            "mmo-bot = mmo.bot.cli:main",
        ],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Games/Entertainment",
    ],
)
