"""
Certificates for a deployment: its own certificate authority, and a server
and a client certificate for every process.

Processes talk to each other over mutual TLS, and each one proves its name
with a certificate signed by the deployment's CA (see C{docs/tls.md}).  This
module makes that CA and those certificates, and is the C{mmo-certs}
command::

    mmo-certs --config conf/standalone.toml

The deployment's TLS directory (C{[deployment] tls_dir}) then holds::

    ca.crt  ca.key                      the deployment CA
    NAME.crt  NAME.key                  server certificate of process NAME
    NAME.client.crt  NAME.client.key    its client certificate
    ticket.key                          the secret of session tickets
    redis.crt  redis.key                the Redis a manager runs: its server
    redis.password                      certificate, and its password

This layout is a contract: L{mmo.tls} and the processes read these names.

Keys are ECDSA P-256 (small, fast handshakes), signatures SHA-256.  Private
keys are unencrypted PKCS#8 PEM, created with mode 0600; every file is
written atomically, so a crash never leaves a half-written key or a key next
to a certificate it does not belong to.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import secrets
import sys
from collections.abc import Iterable, Sequence
from typing import IO

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mmo import config as mmo_config
from mmo.login.tickets import new_key as new_ticket_key
from mmo.redis import LOCAL_REDIS, LocalRedisFiles, local_redis

#: The type of the keys this module generates.
PrivateKey = ec.EllipticCurvePrivateKey

#: Default validity of the CA, in days.
CA_DAYS = 3650

#: Default validity of process certificates, in days.  825 days is the most
#: that some TLS clients (Apple's) accept for a server certificate.
LEAF_DAYS = 825

#: How far back certificates are dated, so that a peer whose clock is a
#: little behind does not reject a certificate made a moment ago.
CLOCK_SKEW = datetime.timedelta(minutes=5)

#: File names of the CA in the TLS directory.
CA_CERT = "ca.crt"
CA_KEY = "ca.key"

#: The two kinds of process certificate, by the C{usage} argument of L{issue}.
USAGES = {
    "server": ExtendedKeyUsageOID.SERVER_AUTH,
    "client": ExtendedKeyUsageOID.CLIENT_AUTH,
}

_KEY_MODE = 0o600
_CERT_MODE = 0o644
_DIR_MODE = 0o700


class CertsError(Exception):
    """
    Certificates cannot be generated as asked: files are in the way, the
    existing CA cannot be used, or the directory cannot be written.  The
    message is meant for the operator.
    """


#: The session ticket key, next to the certificates.
TICKET_KEY = "ticket.key"
#: The identity of the operators' certificate (mmo-admin), a name no process may take.
ADMIN = mmo_config.RESERVED_NAMES[0]
#: The identity of the certificate Prometheus scrapes the processes' /metrics with.
PROMETHEUS = mmo_config.RESERVED_NAMES[1]
#: The client certificates of no process: what each is for.
OPERATOR_CLIENTS = {ADMIN: "mmo-admin", PROMETHEUS: "Prometheus (/metrics)"}


def leaf_paths(directory: str, name: str) -> dict[str, str]:
    """
    The files of process C{name} in the TLS directory C{directory}.

    @return: C{{"crt", "key", "client.crt", "client.key"}} mapped to paths.
    """
    return {
        "crt": os.path.join(directory, f"{name}.crt"),
        "key": os.path.join(directory, f"{name}.key"),
        "client.crt": os.path.join(directory, f"{name}.client.crt"),
        "client.key": os.path.join(directory, f"{name}.client.key"),
    }


def _new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _signature_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.HashAlgorithm | None:
    """SHA-256, except for the EdDSA keys that hash internally (an operator's CA may be one)."""
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    return hashes.SHA256()


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    if days < 1:
        raise ValueError(f"validity must be at least 1 day, got {days}")
    now = datetime.datetime.now(datetime.UTC)
    return now - CLOCK_SKEW, now + datetime.timedelta(days=days)


def create_ca(name: str, days: int = CA_DAYS) -> tuple[PrivateKey, x509.Certificate]:
    """
    Make a new, self-signed certificate authority for the deployment C{name}.

    It may sign end-entity certificates only (path length 0): a deployment
    has no intermediate CAs, and a process key must never be able to mint
    certificates.

    @param name: The deployment name; the subject is C{"<name> mmo CA"}.
    @param days: How long the CA is valid.
    @return: The CA's private key and certificate.
    """
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} mmo CA")])
    not_before, not_after = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def subject_alt_names(name: str, hosts: Iterable[str] = ()) -> list[x509.GeneralName]:
    """
    The subject alternative names of a server certificate for process
    C{name} reached at C{hosts}: C{name} itself, then each host, IP addresses
    as IP entries and anything else as a DNS name.  Duplicates are dropped
    (DNS names compared without case, addresses by value, so C{"::1"} and
    C{"0::1"} are one entry).
    """
    names: list[x509.GeneralName] = []
    seen: set[object] = set()
    for host in (name, *hosts):
        entry: x509.GeneralName
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            identity: object = host.lower()
            entry = x509.DNSName(host)
        else:
            identity = address
            entry = x509.IPAddress(address)
        if identity not in seen:
            seen.add(identity)
            names.append(entry)
    return names


def issue(
    ca_key: CertificateIssuerPrivateKeyTypes,
    ca_cert: x509.Certificate,
    name: str,
    hosts: Iterable[str] = (),
    usage: str = "server",
    days: int = LEAF_DAYS,
) -> tuple[PrivateKey, x509.Certificate]:
    """
    Make a new key and a certificate for it, signed by the CA.

    A C{"server"} certificate is what a process presents to whoever connects
    to it: its names are C{name} and every entry of C{hosts} (see
    L{subject_alt_names}).  A C{"client"} certificate is what a process
    presents when it connects to another process: its only name is C{name},
    the process identity peers check, so C{hosts} is not used.

    The certificate never outlives the CA: past the CA's expiry it could not
    be verified anyway.

    @param ca_key: The CA's private key.
    @param ca_cert: The CA's certificate.
    @param name: The process name, which is the certificate's identity.
    @param hosts: Host names and IP addresses (strings) the server is
        reached at.
    @param usage: C{"server"} or C{"client"}.
    @param days: How long the certificate is valid.
    @return: The new private key and its certificate.
    @raise ValueError: C{usage} is neither, or the CA has expired.
    """
    if usage not in USAGES:
        raise ValueError(f"usage must be 'server' or 'client', got {usage!r}")
    if usage == "server":
        alt_names = subject_alt_names(name, hosts)
    else:
        alt_names = subject_alt_names(name)
    not_before, not_after = _validity(days)
    not_after = min(not_after, ca_cert.not_valid_after_utc)
    if not_after <= not_before:
        raise ValueError(f"the CA expired on {ca_cert.not_valid_after_utc:%Y-%m-%d}")
    try:
        ca_key_id = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id)
    except x509.ExtensionNotFound:
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    key = _new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([USAGES[usage]]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(authority_key_id, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, _signature_hash(ca_key))
    )
    return key, cert


# Writing files


def _key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _stage(path: str, data: bytes, mode: int, exact_mode: bool) -> str:
    """
    Write C{data} to a new temporary file next to C{path}, flushed to disk,
    ready to be renamed over C{path}.

    The file is created with C{mode} in the same system call that creates
    it, so it is never readable by anyone C{mode} excludes, even briefly.
    With C{exact_mode} the mode is also set explicitly, so that neither the
    umask nor anything else leaves it different (a key must be exactly
    0600); without, the umask may narrow it (certificates are public, but an
    operator's stricter umask is respected).

    @return: The temporary file's path.
    """
    directory, base = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{base}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temporary, flags, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            if exact_mode:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _discard(temporary)
        raise
    return temporary


def _discard(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _sync_directory(directory: str) -> None:
    """Make renames in C{directory} durable, where the platform allows."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomically(path: str, data: bytes, mode: int, exact_mode: bool) -> None:
    temporary = _stage(path, data, mode, exact_mode)
    try:
        os.replace(temporary, path)
    except BaseException:
        _discard(temporary)
        raise
    _sync_directory(os.path.dirname(os.path.abspath(path)))


def write_private_key(path: str, key: CertificateIssuerPrivateKeyTypes) -> None:
    """
    Write C{key} to C{path} as unencrypted PKCS#8 PEM, mode 0600, atomically:
    C{path} holds either its old content or the whole new key.
    """
    _write_atomically(path, _key_pem(key), _KEY_MODE, exact_mode=True)


def write_secret(path: str, data: bytes) -> None:
    """Write C{data} to C{path}, mode 0600 whatever the umask, atomically."""
    _write_atomically(path, data, _KEY_MODE, exact_mode=True)


def write_certificate(path: str, cert: x509.Certificate) -> None:
    """Write C{cert} to C{path} as PEM, atomically, readable by all (umask permitting)."""
    _write_atomically(path, _cert_pem(cert), _CERT_MODE, exact_mode=False)


class _Batch:
    """
    Files to write together: each is staged in a temporary file first, and
    only when every one of them is on disk are they renamed into place, one
    after the other.  A failure while staging leaves the old files alone.
    """

    def __init__(self) -> None:
        self._files: list[tuple[str, bytes, int, bool, str]] = []

    def add_key(self, path: str, key: CertificateIssuerPrivateKeyTypes, what: str) -> None:
        self._files.append((path, _key_pem(key), _KEY_MODE, True, what))

    def add_secret(self, path: str, data: bytes, what: str) -> None:
        self._files.append((path, data, _KEY_MODE, True, what))

    def add_certificate(self, path: str, cert: x509.Certificate, what: str) -> None:
        self._files.append((path, _cert_pem(cert), _CERT_MODE, False, what))

    def commit(self, out: IO[str] | None) -> list[str]:
        """Write every file; report each on C{out}; return their paths."""
        staged: list[tuple[str, str, str]] = []
        written: list[str] = []
        try:
            for path, data, mode, exact_mode, what in self._files:
                staged.append((_stage(path, data, mode, exact_mode), path, what))
            for temporary, path, what in staged:
                os.replace(temporary, path)
                written.append(path)
                if out is not None:
                    out.write(f"wrote {path}: {what}\n")
        finally:
            for temporary, _, _ in staged[len(written) :]:
                _discard(temporary)
        for directory in {os.path.dirname(os.path.abspath(path)) for path in written}:
            _sync_directory(directory)
        return written


# Reading the existing CA


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CertsError(f"cannot read the {what} {path}: {e.strerror or e}") from None


def load_ca(directory: str) -> tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]:
    """
    Read the CA from the TLS directory and check that it can sign: the
    certificate is a CA, has not expired, and the key is its key.

    @raise CertsError: It cannot be read or used; the message names the file.
    """
    cert_path = os.path.join(directory, CA_CERT)
    key_path = os.path.join(directory, CA_KEY)
    try:
        cert = x509.load_pem_x509_certificate(_read(cert_path, "CA certificate"))
    except ValueError as e:
        raise CertsError(f"cannot load the CA certificate {cert_path}: {e}") from None
    try:
        key = serialization.load_pem_private_key(_read(key_path, "CA key"), password=None)
    except TypeError:
        raise CertsError(
            f"cannot load the CA key {key_path}: it is encrypted; mmo-certs needs an "
            f"unencrypted key"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise CertsError(f"cannot load the CA key {key_path}: {e}") from None
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = constraints.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise CertsError(f"{cert_path} is not a CA certificate (no basicConstraints CA:TRUE)")

    def spki(public_key) -> bytes:
        return public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    if spki(key.public_key()) != spki(cert.public_key()):
        raise CertsError(f"the CA key {key_path} does not belong to the CA certificate {cert_path}")
    if cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC):
        raise CertsError(
            f"the CA {cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
            f"use --force to make a new CA and certificates"
        )
    return key, cert


# Generating a deployment's files


def generate(
    config: mmo_config.Config,
    directory: str | None = None,
    force: bool = False,
    renew: bool = False,
    days: int = LEAF_DAYS,
    out: IO[str] | None = None,
    ca_days: int = CA_DAYS,
) -> list[str]:
    """
    Write the CA and every process's certificates for the deployment
    described by C{config}.

    By default nothing is replaced: if any of the files exists, nothing is
    written, so that an accidental second run cannot invalidate certificates
    that are deployed.  C{force} makes a new CA and everything else;
    C{renew} keeps the CA (whose certificate the clients trust) and reissues
    the certificates of every process in the config, with new keys.
    Certificates of processes that are no longer in the config are left
    alone.

    Every key and certificate is made before the first file is written.

    @param directory: The TLS directory; default: the config's C{tls_dir}.
        Created, mode 0700, if missing.
    @param days: Validity of the process certificates.
    @param ca_days: Validity of a new CA.
    @param out: Where to report each file written, one line each.
    @return: The paths written.
    @raise CertsError: The files exist (neither flag), the CA cannot be
        used (C{renew}), both flags are given, or a file cannot be written.
    """
    if force and renew:
        raise CertsError("--force and --renew cannot be used together")
    if directory is None:
        directory = config.deployment.tls_dir
    names = sorted(config.processes)
    if "ca" in names:
        problem = mmo_config.ConfigError(
            f"the name 'ca' is reserved: its certificate would overwrite the CA's {CA_CERT}",
            ("processes", "ca"),
            config.file,
        )
        raise CertsError(str(problem))
    redis = local_redis(config)
    if redis is not None and LOCAL_REDIS in names:
        problem = mmo_config.ConfigError(
            f"the name {LOCAL_REDIS!r} is reserved: it is the Redis that "
            f"processes.{redis.name} runs (redis_server = true)",
            ("processes", LOCAL_REDIS),
            config.file,
        )
        raise CertsError(str(problem))
    redis_files = LocalRedisFiles.in_directory(directory) if redis else None
    ca_paths = [os.path.join(directory, CA_CERT), os.path.join(directory, CA_KEY)]
    ticket_key = os.path.join(directory, TICKET_KEY)
    if not force and not renew:
        targets = ca_paths + [p for name in names for p in leaf_paths(directory, name).values()]
        targets.append(ticket_key)
        if redis_files is not None:
            targets += [redis_files.certificate, redis_files.key, redis_files.password]
        for client in OPERATOR_CLIENTS:
            targets += [leaf_paths(directory, client)[k] for k in ("client.crt", "client.key")]
        existing = [path for path in targets if os.path.lexists(path)]
        if existing:
            raise CertsError(
                f"certificates already exist: {', '.join(existing)}; use --force to replace "
                f"everything, or --renew to reissue the process certificates with the "
                f"existing CA"
            )

    batch = _Batch()
    if renew:
        ca_key, ca_cert = load_ca(directory)
    else:
        ca_key, ca_cert = create_ca(config.deployment.name, ca_days)
        batch.add_certificate(ca_paths[0], ca_cert, "CA certificate")
        batch.add_key(ca_paths[1], ca_key, "CA private key")
    for name in names:
        process = config.processes[name]
        paths = leaf_paths(directory, name)
        key, cert = issue(ca_key, ca_cert, process.identity, process.hosts, "server", days)
        alt_names = subject_alt_names(process.identity, process.hosts)
        hosts = ", ".join(str(alt_name.value) for alt_name in alt_names)
        batch.add_certificate(paths["crt"], cert, f"server certificate of {name} for {hosts}")
        batch.add_key(paths["key"], key, f"private key of {name}")
        key, cert = issue(ca_key, ca_cert, process.identity, (), "client", days)
        batch.add_certificate(paths["client.crt"], cert, f"client certificate of {name}")
        batch.add_key(paths["client.key"], key, f"private key of {name}'s client certificate")
    # The operators' certificates: mmo-admin presents its own to managers,
    # Prometheus its own to the processes' metrics listeners.
    for client, user in OPERATOR_CLIENTS.items():
        paths = leaf_paths(directory, client)
        key, cert = issue(ca_key, ca_cert, client, (), "client", days)
        batch.add_certificate(paths["client.crt"], cert, f"client certificate of {user}")
        batch.add_key(paths["client.key"], key, f"private key of {user}'s certificate")
    # The secret that login signs session tickets with and gateways check
    # them with; a renewal keeps it, so tickets in flight stay valid.
    if not (renew and os.path.exists(ticket_key)):
        batch.add_secret(ticket_key, new_ticket_key(), "session ticket key")
    if redis_files is not None:
        # The Redis the manager runs: a server certificate for where the
        # processes reach it, and its password, kept by a renewal like the
        # ticket key (the manager hands it to its Redis at every start).
        key, cert = issue(ca_key, ca_cert, LOCAL_REDIS, [config.redis.host], "server", days)
        batch.add_certificate(
            redis_files.certificate, cert, f"server certificate of the local Redis for "
            f"{config.redis.host}"
        )  # fmt: skip
        batch.add_key(redis_files.key, key, "private key of the local Redis")
        if not (renew and os.path.exists(redis_files.password)):
            password = secrets.token_urlsafe(32).encode() + b"\n"
            batch.add_secret(redis_files.password, password, "password of the local Redis")

    try:
        os.makedirs(directory, mode=_DIR_MODE, exist_ok=True)
        return batch.commit(out)
    except OSError as e:
        where = e.filename if e.filename else directory
        raise CertsError(f"cannot write {where}: {e.strerror or e}") from None


# The mmo-certs command


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmo-certs",
        description=(
            "Make the deployment's certificate authority and a server and a client "
            "certificate for every process of the config file."
        ),
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="the deployment config")
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="where to write (default: [deployment] tls_dir of the config)",
    )
    replace = parser.add_mutually_exclusive_group()
    replace.add_argument(
        "--force", action="store_true", help="replace everything, including the CA"
    )
    replace.add_argument(
        "--renew",
        action="store_true",
        help="keep the CA; reissue every process's certificates with new keys",
    )
    parser.add_argument(
        "--days",
        type=_positive,
        default=LEAF_DAYS,
        metavar="N",
        help=f"validity of process certificates in days (default: {LEAF_DAYS})",
    )
    parser.add_argument(
        "--ca-days",
        type=_positive,
        default=None,
        metavar="N",
        help=f"validity of a new CA in days (default: {CA_DAYS})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    The C{mmo-certs} command.

    @param argv: The arguments, without the program name; default
        C{sys.argv[1:]}.
    @return: 0 on success.
    @raise SystemExit: With status 1 when the config is wrong or the
        certificates cannot be made (after printing why to stderr, without
        a traceback), or 2 for bad arguments.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.renew and args.ca_days is not None:
        parser.error("--ca-days makes a new CA, but --renew keeps the existing one")
    try:
        config = mmo_config.load(args.config)
        directory = args.dir if args.dir is not None else config.deployment.tls_dir
        generate(
            config,
            directory,
            force=args.force,
            renew=args.renew,
            days=args.days,
            ca_days=args.ca_days or CA_DAYS,
            out=sys.stdout,
        )
    except (mmo_config.ConfigError, CertsError) as e:
        sys.stderr.write(f"mmo-certs: {e}\n")
        raise SystemExit(1)
    ca_cert = os.path.join(directory, CA_CERT)
    kept = "kept" if args.renew else "new"
    sys.stdout.write(
        f"CA ({kept}): {ca_cert}; clients of this deployment must trust it.\n"
        f"Check a running listener with:\n"
        f"  openssl s_client -connect HOST:PORT -CAfile {ca_cert}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
