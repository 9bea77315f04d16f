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

Roles (:mod:`hftpipe.ui.roles`): ``trader`` (view, halt), ``risk`` (view, halt, reduce, resume, change
limits, compliance page), ``admin`` (everything). Users with distinct roles come from a users file
(``ui.users_file``, default ``HFTPIPE_HOME/ui/users.yaml`` when it exists)::

    users:
      alice: {password_hash: "scrypt:32768:8:1$...", role: trader}
      rita: {password_hash: "scrypt:...", role: risk}

Users from the environment (``HFTPIPE_UI_USERS`` / ``HFTPIPE_UI_USER``) get ``HFTPIPE_UI_ROLE``, by
default ``admin``: a single configured operator (what ``hftpipe run`` creates) must be able to lift a halt,
and a deployment that wants least privilege lists its users in the file. The generated development user
is ``admin`` for the same reason. A name in both the file and the environment is an error.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from werkzeug.security import check_password_hash, generate_password_hash

from hftpipe.errors import ConfigError

ENV_MODE = "HFTPIPE_ENV"
MODES = ("development", "production")
ENV_USERS = "HFTPIPE_UI_USERS"
ENV_USER = "HFTPIPE_UI_USER"
ENV_PASSWORD_HASH = "HFTPIPE_UI_PASSWORD_HASH"
ENV_SECRET_KEY = "HFTPIPE_UI_SECRET_KEY"
ENV_ROLE = "HFTPIPE_UI_ROLE"
ROLES = ("trader", "risk", "admin")
ENV_DEFAULT_ROLE = "admin"  # environment users (the single operator of `hftpipe run`): see the module docstring
FALLBACK_ROLE = "trader"  # a user without a recorded role (credentials built in code) gets the least privilege
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
    roles: Mapping[str, str] = field(default_factory=dict)  # name -> trader / risk / admin

    def role_of(self, name: str | None) -> str | None:
        """The role of a known user (:data:`FALLBACK_ROLE` when none is recorded); None for an unknown one."""
        if name is None or name not in self.users:
            return None
        return self.roles.get(name, FALLBACK_ROLE)

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


def load_credentials(env: Mapping[str, str] | None = None, users_file: str | Path | None = None) -> Credentials:
    """Read users and the secret key from the environment, plus users with roles from ``users_file``
    (skipped when it does not exist).

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
    env_role = _check_role(env.get(ENV_ROLE, "").strip() or ENV_DEFAULT_ROLE, ENV_ROLE, "environment users")
    roles = {name: env_role for name in users}
    if users_file is not None and Path(users_file).is_file():
        file_users, file_roles = load_users_file(users_file)
        both = sorted(set(file_users) & set(users))
        if both:
            raise ConfigError(f"user(s) {', '.join(both)} defined both in {users_file} and in the environment; "
                              "keep each user in one place")
        users.update(file_users)
        roles.update(file_roles)
    secret_key = env.get(ENV_SECRET_KEY, "").strip()
    if production:
        if not users:
            raise ConfigError(f"{ENV_MODE}=production: set {ENV_USERS} or {ENV_PASSWORD_HASH}; "
                              "there is no default password in production")
        if len(secret_key) < MIN_SECRET_KEY:
            raise ConfigError(f"{ENV_MODE}=production: set {ENV_SECRET_KEY} to a random string of at least "
                              f"{MIN_SECRET_KEY} characters (e.g. python -c 'import secrets; "
                              "print(secrets.token_hex(32))')")
        return Credentials(users=users, secret_key=secret_key, production=True, roles=roles)
    generated = None
    if not users:
        generated = secrets.token_urlsafe(12)
        name = env.get(ENV_USER, "").strip() or DEFAULT_USER
        users, roles = {name: generate_password_hash(generated)}, {name: env_role}
    return Credentials(users=users, secret_key=secret_key or secrets.token_hex(32), production=False,
                       generated_password=generated, roles=roles)


def _check_role(role: str, source: str, name: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"{source}: role {role!r} of {name} is not one of {', '.join(ROLES)}")
    return role


def load_users_file(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """(name -> password hash, name -> role) from a users YAML file (see the module docstring).

    Raises:
        ConfigError: unreadable file, wrong shape, a missing or malformed hash, an unknown role.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"users file {path} cannot be read: {exc}") from exc
    entries = raw.get("users") if isinstance(raw, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"users file {path}: expected a mapping 'users:' of name -> {{password_hash, role}}")
    users: dict[str, str] = {}
    roles: dict[str, str] = {}
    for name, entry in entries.items():
        name = str(name).strip()
        if not name or not isinstance(entry, dict):
            raise ConfigError(f"users file {path}: user {name!r} needs password_hash and role")
        unknown = sorted(set(entry) - {"password_hash", "role"})
        if unknown:
            raise ConfigError(f"users file {path}: user {name!r} has unknown key(s) {', '.join(unknown)}; "
                              "known: password_hash, role")
        users[name] = _check_hash(name, str(entry.get("password_hash") or ""), f"users file {path}")
        roles[name] = _check_role(str(entry.get("role") or ""), f"users file {path}", f"user {name!r}")
    return users, roles


def users_file_path(configured: str | None) -> Path | None:
    """The users file to read: ``ui.users_file`` (must exist), else ``HFTPIPE_HOME/ui/users.yaml`` if present.

    Raises:
        ConfigError: ``ui.users_file`` names a file that does not exist.
    """
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise ConfigError(f"ui.users_file: {path} does not exist; create it (see hftpipe.ui.security) or unset it")
        return path
    from hftpipe import paths

    default = paths.home() / "ui" / "users.yaml"
    return default if default.is_file() else None


def write_user(path: str | Path, name: str, password: str, role: str) -> bool:
    """Add or replace ``name`` in the users file (created 0600); True when the user was new.

    Raises:
        ConfigError: bad name, short password, unknown role, or an existing file that is malformed.
    """
    path = Path(path)
    name = name.strip()
    if not name or len(name) > 64 or any(c.isspace() or c in ",=" for c in name):
        raise ConfigError(f"user name {name!r}: 1-64 characters without spaces, commas or '='")
    if len(password) < 12:
        raise ConfigError("the password must have at least 12 characters")
    _check_role(role, "--role", f"user {name!r}")
    users, roles = load_users_file(path) if path.is_file() else ({}, {})
    new = name not in users
    users[name], roles[name] = generate_password_hash(password), role
    data = {"users": {n: {"password_hash": users[n], "role": roles[n]} for n in sorted(users)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.chmod(0o600)  # password hashes: nobody else's business
    tmp.replace(path)
    return new
