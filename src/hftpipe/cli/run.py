"""``hftpipe run`` (what ``make run`` calls): the whole pipeline, then the online stack on loopback.

After the pipeline: the NATS JetStream broker, the model server, the signal service, a feed replaying the
ingested day in real time on a loop, and the UI. ``hftpipe stop`` stops them all, newest first.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from hftpipe import paths


def register(group: click.Group) -> None:
    group.add_command(run)
    group.add_command(stop)


def _served_uri(model_name: str) -> tuple[str, str]:
    """The champion if there is one, else the newest challenger (said loudly: it was not promoted)."""
    from hftpipe.errors import RegistryError
    from hftpipe.registry import resolve_model

    for alias in ("champion", "challenger"):
        uri = f"models:/{model_name}@{alias}"
        try:
            resolve_model(uri)
        except RegistryError:
            continue
        return uri, alias
    raise RegistryError(f"model {model_name} has neither a champion nor a challenger; run the pipeline first")


def resolved_params(cfg: Any) -> Path:
    """Write the resolved config (params.yaml plus every -S) where the started servers read it.

    Before, the servers were started with bare ``hftpipe serve`` / ``hftpipe ui`` and re-read params.yaml,
    so ``-S serve.port=8090 run`` still bound 8080.
    """
    path = paths.sub("run") / "params.resolved.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


@click.command()
@click.option("--data", help="LOBSTER zip or CSV pair (default: data.source, the shipped GOOG sample).")
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="Start the model server and the UI after the pipeline.")
@click.option("--skip-pipeline", is_flag=True, help="Only (re)start the server and UI on the registry as it is.")
@click.pass_obj
def run(obj, data: str | None, serve: bool, skip_pipeline: bool) -> None:
    """Run the pipeline on the shipped data, then leave the model server and the UI running on 127.0.0.1."""
    from werkzeug.security import generate_password_hash

    from hftpipe.pipeline.runner import latest_artifacts, run_local
    from hftpipe.pipeline.services import Service, start

    cfg = obj.config
    replay = latest_artifacts().get("events_path", cfg.ui.replay_source)
    if not skip_pipeline:
        from hftpipe.cli.pipeline import step_printer

        source = data or (cfg.data.source if isinstance(cfg.data.source, str) else list(cfg.data.source))
        click.echo(f"running the training pipeline locally (kfp.local) on {source}")
        summary = run_local(cfg, source, on_step=step_printer())
        for line in summary.lines():
            click.echo(line)
        if summary.status != "succeeded":
            sys.exit(1)
        replay = summary.artifacts.get("events_path", replay)
    if not serve:
        return
    uri, alias = _served_uri(cfg.register.model_name)
    if alias != "champion":
        click.secho(f"no version passed the promotion gate: serving the challenger {uri} "
                    "(the UI labels it as such)", fg="yellow")
    # Both ports are checked before either server starts: a taken UI port must not leave a lone model server.
    from hftpipe.errors import HftpipeError, PipelineError
    from hftpipe.pipeline.services import port_taken
    from hftpipe.pipeline.services import stop as stop_service

    for name, host, port, setting in (("serve", cfg.serve.host, cfg.serve.port, "serve.port"),
                                      ("ui", cfg.ui.host, cfg.ui.port, "ui.port")):
        stop_service(name)  # our own previous instance may hold it
        holder = port_taken(host, port)
        if holder:
            raise PipelineError(f"{name}: port {port} on {host} is taken by {holder}; stop it or choose another "
                                f"with -S {setting}=PORT")
    params = ["--params", str(resolved_params(cfg))]
    serve_url = f"http://{cfg.serve.host}:{cfg.serve.port}"
    from hftpipe.bus.server import start_server

    bus = start_server(cfg.bus)
    click.echo(f"event bus (nats-server, JetStream) on {bus.url}")
    click.echo(f"starting the model server on {serve_url} ...")
    start(Service("serve", [*params, "serve", "--model-uri", uri], f"{serve_url}/v2/health/ready", {},
                  host=cfg.serve.host, port=cfg.serve.port, port_setting="serve.port"))
    try:
        click.echo("starting the signal service (md.> -> model -> sig.<symbol>) ...")
        start(Service("signals", [*params, "signals", "--model", uri], "", {}, ready_file="signals"))
        click.echo(f"starting the paper trader ({cfg.paper.policy or cfg.trading.policy} policy under the risk engine) ...")
        start(Service("trader", [*params, "trade", "--paper"], "", {}, ready_file="trader"))
        click.echo("starting the outcome monitor (signals scored k events later, beside the baselines) ...")
        start(Service("feedback", [*params, "monitor", "run", "--model", uri], "", {}, ready_file="feedback"))
        click.echo(f"starting the feed: {replay} replayed at {cfg.feed.speed:g}x real time, on a loop ...")
        start(Service("feed", [*params, "feed", "replay", str(replay), "--loop", "--name", "feed"], "", {},
                      ready_file="feed"))
    except PipelineError:
        for name in ("feed", "feedback", "trader", "signals", "serve"):
            stop_service(name)
        raise
    password = secrets.token_urlsafe(12)
    ui_url = f"http://{cfg.ui.host}:{cfg.ui.port}"
    env = {"HFTPIPE_UI_USER": "admin", "HFTPIPE_UI_ROLE": "admin", "HFTPIPE_UI_PASSWORD_HASH": generate_password_hash(password),
           "HFTPIPE_UI_SECRET_KEY": secrets.token_hex(32)}
    click.echo(f"starting the UI on {ui_url} ...")
    try:
        start(Service("ui", [*params, "-S", f"ui.replay_source={replay}", "-S", f"ui.serving_url={serve_url}",
                             "ui"], f"{ui_url}/login", env, host=cfg.ui.host, port=cfg.ui.port, port_setting="ui.port"))
    except PipelineError:
        for name in ("feed", "feedback", "trader", "signals", "serve"):  # half a stack is worse than none: the message says what to fix
            stop_service(name)
        raise
    from hftpipe.monitoring import prometheus as prom

    try:
        prom.stop()  # a previous run's instance: restart it on this run's scrape config
        _, prom_url = prom.start(cfg)
    except HftpipeError as exc:  # monitoring is not worth tearing the stack down for: say so and go on
        prom_url = ""
        click.secho(f"Prometheus not started: {exc}", fg="yellow")
    login = paths.home() / "ui-login.txt"
    login.write_text(f"user: admin (role admin; add traders and risk officers with `hftpipe ui-user add NAME --role trader|risk`)\npassword: {password}\n")
    login.chmod(0o600)
    click.echo("")
    click.echo(f"model server: {serve_url}  (V1 {serve_url}/v1/models/{cfg.register.model_name}:predict, "
               f"metrics {serve_url}/metrics)")
    click.echo(f"trader UI:    {ui_url}  (user admin, password {password}; also in {login})")
    click.echo(f"paper trading: {ui_url}/trading  (positions, PnL, orders, fills, risk state; kill switch at "
               f"{ui_url}/risk or `hftpipe risk halt --reason TEXT`)")
    click.echo(f"live stream:  {ui_url}/stream  (signals from the bus; `hftpipe bus tail 'sig.>' --json` in a shell)")
    click.echo(f"event bus:    {bus.url}  (feed -> md.>, signal service -> sig.>; metrics "
               f"127.0.0.1:{cfg.signals.metrics_port} and :{cfg.feed.metrics_port})")
    if prom_url:
        click.echo(f"prometheus:   {prom_url}  (scrapes every service; the UI's /monitoring draws from it)")
    click.echo("stop everything with `make stop` (or `hftpipe stop`); logs in " + str(paths.logs_dir()))


ONLINE_SERVICES = ("ui", "feed", "feedback", "trader", "signals", "serve")  # stopped in this order: consumers after their feed


@click.command()
@click.pass_obj
def stop(obj) -> None:
    """Stop everything ``hftpipe run`` started (UI, feed, monitor, trader, signals, model server, bus, Prometheus)."""
    from hftpipe.bus.server import stop_server
    from hftpipe.pipeline.services import stop as stop_service

    for name in ONLINE_SERVICES:
        click.echo(f"{name}: {'stopped' if stop_service(name) else 'not running'}")
    click.echo(f"bus: {'stopped' if stop_server(obj.config.bus) else 'not running'}")
    from hftpipe.monitoring import prometheus as prom

    click.echo(f"prometheus: {'stopped' if prom.stop() else 'not running'}")
