"""
The C{[login]} section: accounts, passwords, throttles and session tickets.
"""

from __future__ import annotations

from mmo.config.schema import FilePath, Number, Section, Str


class LoginSection(Section):
    """Accounts, passwords, throttles and session tickets."""

    fields = {
        "ticket_ttl": Number(
            60.0, minimum=1, maximum=3600, kind=float, doc="Seconds a session ticket stays valid."
        ),
        "refresh_ttl": Number(
            30 * 86400.0,
            minimum=60,
            maximum=400 * 86400,
            kind=float,
            doc="Seconds a refresh token stays valid after its issue or last use.",
        ),
        "refresh_devices": Number(
            10,
            minimum=1,
            maximum=1000,
            doc="Devices of one account holding a refresh token; a new one "
            "revokes the least recently used.",
        ),
        "ticket_key": FilePath("", doc="Secret that signs tickets; default TLS_DIR/ticket.key."),
        "name_min_length": Number(3, minimum=1, maximum=64, doc="Shortest account name."),
        "name_max_length": Number(20, minimum=1, maximum=64, doc="Longest account name."),
        "password_min_length": Number(8, minimum=4, maximum=1024, doc="Shortest password."),
        "password_max_length": Number(256, minimum=8, maximum=4096, doc="Longest password."),
        "hash_threads": Number(
            0,
            minimum=0,
            maximum=256,
            doc="Threads hashing passwords (off the reactor); 0: one per core.",
        ),
        "hash_queue": Number(
            64,
            minimum=1,
            maximum=100000,
            doc="Hashes waiting for a thread before logins get 'busy'.",
        ),
        "argon2_time_cost": Number(2, minimum=1, maximum=100, doc="argon2id iterations."),
        "argon2_memory_kib": Number(
            19456, minimum=64, maximum=4 * 1024 * 1024, doc="argon2id memory per hash, KiB."
        ),
        "argon2_parallelism": Number(1, minimum=1, maximum=64, doc="argon2id lanes."),
        "ip_failures": Number(
            20,
            minimum=1,
            maximum=1000000,
            doc="Failed logins from one address before it is throttled.",
        ),
        "ip_window": Number(
            300.0, minimum=1, maximum=86400, kind=float, doc="Seconds over which ip_failures count."
        ),
        "account_ip_failures": Number(
            5,
            minimum=1,
            maximum=1000000,
            doc="Failures on one account from one address before that address is locked out of it.",
        ),
        "account_failures": Number(
            100,
            minimum=1,
            maximum=1000000,
            doc="Failures on one account from all addresses before "
            "only addresses that never failed may try it.",
        ),
        "account_window": Number(
            900.0,
            minimum=1,
            maximum=86400,
            kind=float,
            doc="Seconds over which account failures count.",
        ),
        "register_per_ip": Number(
            10,
            minimum=1,
            maximum=1000000,
            doc="Registrations from one address per register_window.",
        ),
        "register_window": Number(
            3600.0,
            minimum=1,
            maximum=86400 * 7,
            kind=float,
            doc="Seconds over which register_per_ip counts.",
        ),
        "second_login": Str(
            "replace",
            choices=("replace", "refuse"),
            doc="A second session of one account: 'replace' closes the older "
            "one (telling it why); 'refuse' refuses the newer one.",
        ),
    }

    def check(self):
        if self.name_max_length < self.name_min_length:
            raise self.error("name_max_length", "must not be below name_min_length")
        if self.password_max_length < self.password_min_length:
            raise self.error("password_max_length", "must not be below password_min_length")
