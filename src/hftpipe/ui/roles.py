"""UI roles and what each may do, enforced on the server for every endpoint.

========  ====================================================================
role      permissions
========  ====================================================================
trader    view every page, halt trading (kill switch)
risk      view, halt, reduce, resume, change limits, the compliance page
admin     everything
========  ====================================================================

The role is looked up on every request from the server's credentials (never from the cookie), so a
role change takes effect at the next restart without trusting anything the browser sends. Pages check
one permission with :func:`require`; the guard installed by :func:`install` also refuses any endpoint to
a logged-in user whose role grants no ``view`` (e.g. a user removed from the users file).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, abort, current_app, request

from hftpipe.ui.keys import CREDENTIALS_KEY

log = logging.getLogger(__name__)

VIEW, HALT, REDUCE, RESUME, LIMITS, AUDIT = "view", "halt", "reduce", "resume", "limits", "audit"
PERMISSIONS: dict[str, frozenset[str]] = {
    "trader": frozenset({VIEW, HALT}),
    "risk": frozenset({VIEW, HALT, REDUCE, RESUME, LIMITS, AUDIT}),
    "admin": frozenset({VIEW, HALT, REDUCE, RESUME, LIMITS, AUDIT}),
}
# What a refusal says: the page shows it, so it names the missing right and who has it.
WHO_MAY = {VIEW: "any role", HALT: "trader, risk or admin", REDUCE: "risk or admin", RESUME: "risk or admin",
           LIMITS: "risk or admin", AUDIT: "risk or admin"}

F = TypeVar("F", bound=Callable[..., Any])


def current_role() -> str | None:
    """The logged-in user's role from the server's credentials; None when nobody (known) is logged in."""
    from hftpipe.ui.auth import current_user

    return current_app.config[CREDENTIALS_KEY].role_of(current_user())


def can(permission: str) -> bool:
    role = current_role()
    return role is not None and permission in PERMISSIONS.get(role, frozenset())


def refusal(permission: str, verb: str | None = None) -> str:
    """The one-line message a refused user sees (``verb``: how to say the permission, e.g. "change limits")."""
    role = current_role() or "none"
    return f"Your role ({role}) may not {verb or permission} here; only {WHO_MAY.get(permission, 'admin')} may."


def require(permission: str) -> Callable[[F], F]:
    """Decorator: 403 with :func:`refusal`'s message unless the user's role grants ``permission``."""

    def wrap(view: F) -> F:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if not can(permission):
                log.warning("refused %s %s to role %s (needs %s)", request.method, request.path, current_role(),
                            permission)
                abort(403, description=refusal(permission))
            return view(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return wrap


def install(app: Flask) -> None:
    """Every logged-in request needs ``view``; templates get ``can`` and ``role``."""
    from hftpipe.ui.auth import PUBLIC_ENDPOINTS

    @app.before_request
    def _require_view() -> Any:
        # Runs after the login guard: anonymous requests were redirected already.
        if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS or request.endpoint == "auth.logout":
            return None
        from hftpipe.ui.auth import current_user

        if current_user() is not None and not can(VIEW):
            abort(403, description="Your account has no role that may view this UI; ask an admin.")
        return None

    @app.context_processor
    def _roles() -> dict[str, Any]:
        return {"can": can, "role": current_role}
