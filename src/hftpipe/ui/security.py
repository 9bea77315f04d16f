"""Who may log in and the secrets the UI needs, read from the environment (never from params.yaml).

Environment:

- ``HFTPIPE_UI_USERS``: ``name=<hash>,name2=<hash>`` with werkzeug password hashes
  (``python -c "from werkzeug.security import generate_password_hash as g; print(g('...'))"``);
- ``HFTPIPE_UI_USER`` + ``HFTPIPE_UI_PASSWORD_HASH``: one more user (name defaults to ``trader``);
- ``HFTPIPE_UI_SECRET_KEY``: signs the session cookie (at least 32 characters);
- ``HFTPIPE_ENV``: ``development`` (the default when unset or empty) or ``production``: refuse to start
  without users and a secret key, and mark cookies Secure. Any other value (``prd``, ``staging``...) is
  an error at start, so a mistyped production flag never silently runs in development mode.

In development, with no users configured, a random password is generated for ``trader`` (the CLI prints
it once) and the secret key is random per process (sessions end when the server restarts).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from werkzeug.security import check_password_hash, generate_password_hash

from hftpipe.errors import ConfigError

ENV_MODE = "HFTPIPE_ENV"
MODES = ("development", "production")
ENV_USERS = "HFTPIPE_UI_USERS"
ENV_USER = "HFTPIPE_UI_USER"
ENV_PASSWORD_HASH = "HFTPIPE_UI_PASSWORD_HASH"
ENV_SECRET_KEY = "HFTPIPE_UI_SECRET_KEY"
DEFAULT_USER = "trader"
MIN_SECRET_KEY = 32

# Checked when the user name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Credentials:
    """Users (name -> werkzeug hash), the session secret key and the mode."""

    users: Mapping[str, str]
    secret_key: str = field(repr=False)
    production: bool = False
    generated_password: str | None = field(default=None, repr=False)  # dev only: shown once by the CLI

    def verify(self, name: str, password: str) -> bool:
        """True when ``password`` matches ``name``'s hash (same cost for unknown names)."""
        stored = self.users.get(name)
        ok = check_password_hash(stored or _DUMMY_HASH, password)
        return ok and stored is not None


def runtime_mode(env: Mapping[str, str] | None = None) -> str:
    """``HFTPIPE_ENV`` as one of :data:`MODES` (unset or empty: ``development``).

    Raises:
        ConfigError: any other value; failing open (development mode, generated password, cookies
            without Secure) on a typo such as ``prd`` would be the worst outcome.
    """
    env = os.environ if env is None else env
    value = env.get(ENV_MODE, "").strip()
    if not value:
        return "development"
    if value.lower() in MODES:
        return value.lower()
    raise ConfigError(f"{ENV_MODE}={value!r} is not a known mode: set it to one of {', '.join(MODES)} "
                      "(or leave it unset for development)")


def is_production(env: Mapping[str, str] | None = None) -> bool:
    """True when ``HFTPIPE_ENV`` is ``production``; raises :class:`ConfigError` on an unknown value."""
    return runtime_mode(env) == "production"


def _check_hash(name: str, hashed: str, source: str) -> str:
    hashed = hashed.strip()
    # werkzeug hashes are "method$salt$digest"; a plain password here is a mistake worth stopping on.
    if hashed.count("$") != 2 or not hashed.split("$", 1)[0]:
        raise ConfigError(f"{source}: the entry for user {name!r} is not a werkzeug password hash "
                          "(make one with werkzeug.security.generate_password_hash)")
    return hashed


def parse_users(text: str, source: str = ENV_USERS) -> dict[str, str]:
    """Parse ``name=<hash>,name2=<hash>`` into a mapping; empty text gives no users."""
    users: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, hashed = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"{source}: expected name=<password hash> pairs separated by commas, got {item!r}")
        users[name] = _check_hash(name, hashed, source)
    return users


def load_credentials(env: Mapping[str, str] | None = None) -> Credentials:
    """Read users and the secret key from the environment.

    Raises:
        ConfigError: in production mode when no user or no (long enough) secret key is configured,
            or when a configured hash is malformed.
    """
    env = os.environ if env is None else env
    production = is_production(env)
    users = parse_users(env.get(ENV_USERS, ""))
    single_hash = env.get(ENV_PASSWORD_HASH, "").strip()
    if single_hash:
        name = env.get(ENV_USER, "").strip() or DEFAULT_USER
        users[name] = _check_hash(name, single_hash, ENV_PASSWORD_HASH)
    secret_key = env.get(ENV_SECRET_KEY, "").strip()
    if production:
        if not users:
            raise ConfigError(f"{ENV_MODE}=production: set {ENV_USERS} or {ENV_PASSWORD_HASH}; "
                              "there is no default password in production")
        if len(secret_key) < MIN_SECRET_KEY:
            raise ConfigError(f"{ENV_MODE}=production: set {ENV_SECRET_KEY} to a random string of at least "
                              f"{MIN_SECRET_KEY} characters (e.g. python -c 'import secrets; "
                              "print(secrets.token_hex(32))')")
        return Credentials(users=users, secret_key=secret_key, production=True)
    generated = None
    if not users:
        generated = secrets.token_urlsafe(12)
        users = {env.get(ENV_USER, "").strip() or DEFAULT_USER: generate_password_hash(generated)}
    return Credentials(users=users, secret_key=secret_key or secrets.token_hex(32), production=False,
                       generated_password=generated)
