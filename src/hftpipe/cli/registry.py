"""Registry commands: ``hftpipe register``, ``hftpipe registry list`` and ``hftpipe registry rollback``."""

from __future__ import annotations

import json
from pathlib import Path

import click


def register(group: click.Group) -> None:
    group.add_command(register_model)
    group.add_command(registry)


@click.command("register")
@click.argument("model_dir", required=False)
@click.option("--report", "report_path", help="Evaluation report.json (default: evaluate.output/report.json).")
@click.option("--features", "features_dir",
              help="Feature set the report was computed on; the champion is re-scored on it "
                   "(default: the report's own feature folder when it still exists).")
@click.option("--run-id", help="Log the model into this MLflow run (default: the bundle's training run).")
@click.option("--out", "out_path", type=click.Path(), help="Also write the registration result as JSON here.")
@click.option("--actor", help="Who registers, for the audit trail (default: HFTPIPE_ACTOR or the OS user).")
@click.option("--backtest", "backtest_path", type=click.Path(dir_okay=False, exists=True),
              help="`hftpipe backtest --json` report of this model for its model card (default: register.backtest_report).")
@click.pass_obj
def register_model(obj, model_dir: str | None, report_path: str | None, features_dir: str | None,
                   run_id: str | None, out_path: str | None, actor: str | None, backtest_path: str | None) -> None:
    """Register a trained model and apply the promotion gate (champion or challenger); writes its model card."""
    import dataclasses

    from hftpipe.evaluation.report import REPORT_FILE
    from hftpipe.registry import register as run_register

    cfg = obj.config
    if backtest_path:
        cfg = cfg.replace(register=dataclasses.replace(cfg.register, backtest_report=backtest_path))
    model_dir = model_dir or cfg.train.output
    report_path = report_path or str(Path(cfg.evaluate.output) / REPORT_FILE)
    result = run_register(cfg, model_dir, report_path, features_dir=features_dir, run_id=run_id, actor=actor)
    colour = "green" if result.passed else "yellow"
    click.secho(f"{result.model_name} version {result.version}: gate {result.gate} -> {result.alias}",
                fg=colour, bold=True)
    for reason in result.reasons:
        click.echo(f"  {reason}")
    if result.previous_champion and result.passed:
        click.echo(f"  previous champion v{result.previous_champion} keeps alias 'previous'")
    click.echo(f"model: {result.model_uri} (run {result.run_id})")
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(json.dumps(result.to_dict(), indent=2) + "\n")


@click.group()
def registry() -> None:
    """Inspect registered model versions and roll the champion back."""


@registry.command("list")
@click.option("--name", help="Registered model name (default: register.model_name).")
@click.option("--reasons", is_flag=True, help="Also print each version's gate reasons.")
@click.pass_obj
def list_command(obj, name: str | None, reasons: bool) -> None:
    """List versions with their aliases, gate decision and key test metrics."""
    from hftpipe.registry import list_versions

    name = name or obj.config.register.model_name
    versions = list_versions(name)
    click.echo(f"{name}: {len(versions)} version(s)")
    header = f"{'version':>7}  {'aliases':<20} {'gate':<5} {'macro_f1':>8} {'margin':>8} {'low':>8} " \
             f"{'net_pnl':>9}  {'model':<8} {'k':>4}  created (UTC)"
    click.echo(header)
    for v in versions:
        m = v.metrics
        click.echo(f"{v.version:>7}  {','.join(v.aliases) or '-':<20} {v.decision or '-':<5} "
                   f"{_num(m.get('macro_f1')):>8} {_num(m.get('margin_point')):>8} {_num(m.get('margin_low')):>8} "
                   f"{_num(m.get('net_pnl')):>9}  {v.tags.get('model.name', '-'):<8} "
                   f"{v.tags.get('model.horizon', '-'):>4}  {v.created}"
                   + ("  (rolled back)" if v.tags.get("rollback.demoted") == "true" else ""))
        if reasons:
            for reason in v.reasons:
                click.echo(f"{'':>9}{reason}")


def _num(text: str | None) -> str:
    if text is None:
        return "-"
    try:
        return f"{float(text):.4f}"
    except ValueError:
        return text


@registry.command("rollback")
@click.option("--name", help="Registered model name (default: register.model_name).")
@click.option("--reason", default="", help="Why (kept in the audit trail).")
@click.option("--actor", help="Who (default: HFTPIPE_ACTOR or the OS user).")
@click.pass_obj
def rollback_command(obj, name: str | None, reason: str, actor: str | None) -> None:
    """Move the champion alias back to the previous champion (one audit record)."""
    from hftpipe.registry import rollback

    result = rollback(name or obj.config.register.model_name, actor=actor, reason=reason,
                      audit_url=obj.config.audit.url)
    click.echo(f"{result.model_name}: champion v{result.demoted} -> v{result.restored} "
               f"(v{result.demoted} tagged rolled back; previous -> "
               f"{'v' + result.previous if result.previous else 'none'})")


@registry.command("promote")
@click.argument("version")
@click.option("--name", help="Registered model name (default: register.model_name).")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.option("--actor", help="Who (default: HFTPIPE_ACTOR or the OS user).")
@click.option("--force", is_flag=True, help="Promote a version that did not pass the gate (recorded as forced).")
@click.pass_obj
def promote_command(obj, version: str, name: str | None, reason: str, actor: str | None, force: bool) -> None:
    """Make VERSION the champion by hand (e.g. after a canary); one audit record."""
    from hftpipe.registry import promote

    result = promote(name or obj.config.register.model_name, version, reason, actor=actor,
                     audit_url=obj.config.audit.url, force=force)
    click.echo(f"{result.model_name}: champion {'v' + result.replaced if result.replaced else 'none'} -> "
               f"v{result.champion}{' (forced past the gate)' if result.forced else ''}; audit record written")


@registry.command("alias")
@click.argument("alias")
@click.argument("version")
@click.option("--name", help="Registered model name (default: register.model_name).")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.option("--actor", help="Who (default: HFTPIPE_ACTOR or the OS user).")
@click.pass_obj
def alias_command(obj, alias: str, version: str, name: str | None, reason: str, actor: str | None) -> None:
    """Point ALIAS (not champion) at VERSION; one audit record."""
    from hftpipe.registry import move_alias

    model = name or obj.config.register.model_name
    was = move_alias(model, alias, version, reason, actor=actor, audit_url=obj.config.audit.url)
    click.echo(f"{model}: alias {alias} v{was or '-'} -> v{version}; audit record written")
