"""
The sections every process reads: C{[deployment]} (its name and where the
certificates are), C{[logging]}, C{[wire]} (client framing limits) and
C{[tls]} (the client-facing certificate).
"""

from __future__ import annotations

from mmo.config.schema import FilePath, Number, Section, Str


class DeploymentSection(Section):
    """The deployment's name and where its certificates are."""

    fields = {
        "name": Str(
            "mmo",
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
            doc="Name of the deployment; names its certificate authority.",
        ),
        "tls_dir": FilePath(
            "certs", doc="Where mmo-certs writes, and processes read, certificates."
        ),
        "rpc_unix_dir": FilePath(
            "",
            doc="A directory for Unix-socket links between the processes of one machine: "
            "every process with an rpc listener also listens on DIR/NAME.sock (directory "
            "0700, socket 0600), and peers on the same machine connect there without TLS; "
            "links across machines stay mutual TLS.  Default: none, every link is TLS.",
        ),
    }


class LoggingSection(Section):
    """How every process writes its log."""

    fields = {
        "format": Str(
            "text",
            choices=("text", "json"),
            doc="'text': one readable line per event; 'json': one JSON object per line.",
        ),
        "level": Str(
            "info",
            choices=("debug", "info", "warn", "error", "critical"),
            doc="Lowest level written.",
        ),
    }


class WireSection(Section):
    """Limits of the client framing: frame size and timeouts."""

    fields = {
        "max_frame_size": Number(
            65536,
            minimum=256,  # the handshake reply must fit
            maximum=16 * 1024 * 1024,
            doc="Largest frame body, in bytes, either way.",
        ),
        "handshake_timeout": Number(
            10.0,
            minimum=0.1,
            maximum=3600,
            kind=float,
            doc="Seconds a new connection has to finish the handshake.",
        ),
        "idle_timeout": Number(
            120.0,
            minimum=1,
            maximum=86400,
            kind=float,
            doc="Seconds without any frame from the client before it is closed.",
        ),
    }


class TLSSection(Section):
    """The client-facing certificate and key, instead of the one mmo-certs made."""

    fields = {
        "certificate": FilePath(
            "",
            doc="PEM chain for the client-facing listener (leaf first); "
            "default: the process certificate from mmo-certs.",
        ),
        "private_key": FilePath("", doc="PEM private key of 'certificate'."),
    }

    def check(self):
        if bool(self.certificate) != bool(self.private_key):
            missing = "private_key" if self.certificate else "certificate"
            raise self.error(missing, "certificate and private_key must be set together")
