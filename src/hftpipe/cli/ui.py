"""``hftpipe ui``: the Flask trader front end."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click


def register(group: click.Group) -> None:
    group.add_command(ui)
    group.add_command(ui_user)


@click.command()
@click.option("--host", help="Interface to bind (default: ui.host, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: ui.port).")
@click.option("--serving-url", help="Model server base URL (default: ui.serving_url).")
@click.option("--replay", "replay_source", help="Events Parquet to replay (default: ui.replay_source).")
@click.option("--dev", is_flag=True,
              help="Werkzeug's development server instead of gunicorn (debugging only: no time limits).")
@click.pass_obj
def ui(obj, host: str | None, port: int | None, serving_url: str | None, replay_source: str | None,
       dev: bool) -> None:
    """Run the trader UI: live replay through the model server, models, runs and health.

    Served by gunicorn (threads; time limits and a connection cap from the ui section of params.yaml).
    Log-ins come from the environment: HFTPIPE_UI_USERS ("name=<werkzeug hash>,...") or
    HFTPIPE_UI_PASSWORD_HASH (user HFTPIPE_UI_USER, default "trader"), and HFTPIPE_UI_SECRET_KEY;
    those users get the role HFTPIPE_UI_ROLE (default admin). Users with their own roles (trader,
    risk, admin) come from the users file (ui.users_file, default HFTPIPE_HOME/ui/users.yaml; see
    `hftpipe ui-user add`).
    HFTPIPE_ENV is "development" (default) or "production"; any other value is refused. In production
    the UI refuses to start without users and a secret key and marks its cookies Secure. In
    development, when no user is configured, a random password for "trader" is generated and printed
    once here.
    """
    from hftpipe.ui import create_app
    from hftpipe.ui.security import load_credentials, users_file_path

    cfg = obj.config
    given = {"host": host, "port": port, "serving_url": serving_url, "replay_source": replay_source}
    ui_cfg = dataclasses.replace(cfg.ui, **{k: v for k, v in given.items() if v is not None})
    cfg = cfg.replace(ui=ui_cfg)
    credentials = load_credentials(users_file=users_file_path(cfg.ui.users_file))
    app = create_app(cfg, credentials=credentials)
    if credentials.generated_password:
        user = next(iter(credentials.users))
        click.echo(f"development mode: log in as {user!r} with password {credentials.generated_password} "
                   "(set HFTPIPE_UI_USERS or HFTPIPE_UI_PASSWORD_HASH to choose your own)")
    if dev:
        _serve_werkzeug(app, ui_cfg)
        return
    from hftpipe.ui.server import serve

    click.echo(f"hftpipe UI on http://{ui_cfg.host}:{ui_cfg.port} (gunicorn, {ui_cfg.server_workers} worker(s) "
               f"x {ui_cfg.server_threads} threads; model server {ui_cfg.serving_url}); Ctrl-C stops it")
    sys.stdout.flush()  # the line must reach a pipe before gunicorn forks
    serve(app, ui_cfg)


def _serve_werkzeug(app: Any, ui_cfg: Any) -> None:
    from werkzeug.serving import make_server

    # Threads: each open live page holds one server-sent-events response for the whole replay.
    server = make_server(ui_cfg.host, ui_cfg.port, app, threaded=True)
    click.echo(f"hftpipe UI on http://{ui_cfg.host}:{server.server_port} (werkzeug development server; "
               f"model server {ui_cfg.serving_url}); Ctrl-C stops it")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()


@click.group("ui-user")
def ui_user() -> None:
    """UI users with roles in the users file (trader: view + halt; risk: also resume, reduce, limits,
    compliance; admin: everything)."""


def _users_path(obj: Any) -> Any:
    from pathlib import Path

    from hftpipe import paths

    return Path(obj.config.ui.users_file) if obj.config.ui.users_file else paths.home() / "ui" / "users.yaml"


@ui_user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["trader", "risk", "admin"]), required=True)
@click.password_option(help="Password (prompted, hidden, twice; at least 12 characters).")
@click.pass_obj
def ui_user_add(obj, name: str, role: str, password: str) -> None:
    """Add NAME (or change its password and role); the UI reads the file when it starts."""
    from hftpipe.ui.security import write_user

    path = _users_path(obj)
    new = write_user(path, name, password, role)
    click.echo(f"{'added' if new else 'updated'} {name} ({role}) in {path}; restart the UI to apply")


@ui_user.command("list")
@click.pass_obj
def ui_user_list(obj) -> None:
    """Names and roles in the users file (never the hashes)."""
    from hftpipe.ui.security import load_users_file

    path = _users_path(obj)
    if not path.is_file():
        click.echo(f"no users file at {path}; add one with `hftpipe ui-user add NAME --role ROLE`")
        return
    _, roles = load_users_file(path)
    for name, role in roles.items():
        click.echo(f"{name}\t{role}")
