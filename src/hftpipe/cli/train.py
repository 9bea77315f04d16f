"""``hftpipe train``: one call into :func:`hftpipe.training.train`, optionally under torchrun."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

RUN_ID_FILE = "mlflow_run_id"  # next to the checkpoint, so --resume continues the same MLflow run


def register(group: click.Group) -> None:
    group.add_command(train)


@contextlib.contextmanager
def _tracker(cfg: Any, enabled: bool, features_dirs: list[str], checkpoint_dir: Path, resume: bool) -> Iterator[Any]:
    """Rank 0 with tracking on: an MLflow run (continued on --resume); otherwise no tracker."""
    if not enabled or int(os.environ.get("RANK", "0")) != 0:
        yield None
        return
    from hftpipe.registry.tracker import step_run, train_subject  # the MLflow edge, imported only here

    id_file = checkpoint_dir / RUN_ID_FILE
    run_id = id_file.read_text().strip() if resume and id_file.exists() else None
    # One set: its sha256 / DVC hash become lineage tags; several: the trainer tags each (data.sets).
    lineage = {"features_dir": features_dirs[0]} if len(features_dirs) == 1 else \
        {"tags": {"data.features_dirs": ";".join(features_dirs)}}
    with step_run(cfg, "train", train_subject(cfg), run_id=run_id, **lineage) as tracker:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(tracker.run_id + "\n")
        yield tracker


@click.command()
@click.argument("features_dirs", metavar="[FEATURES_DIR]...", nargs=-1)
@click.option("-o", "--output", help="Model bundle folder (default: train.output).")
@click.option("--nproc", type=int, help="Processes; >1 launches torchrun on this machine (default: train.nproc).")
@click.option("--resume", is_flag=True, help="Continue from the last epoch checkpoint of this output folder.")
@click.option("--tracking/--no-tracking", default=True, show_default=True, help="Log the run to MLflow.")
@click.pass_obj
def train(obj: Any, features_dirs: tuple[str, ...], output: str | None, nproc: int | None, resume: bool,
          tracking: bool) -> None:
    """Train train.model on a feature set and write the model bundle (model.pt + bundle.json).

    Several FEATURE_DIRs (feature sets of other instruments or days, lake partition feature folders)
    train one pooled model; windows never cross from one set into another.
    """
    from hftpipe.errors import ConfigError

    cfg = obj.config
    dirs = list(features_dirs) or [cfg.features.output]
    output = output or cfg.train.output
    nproc = cfg.train.nproc if nproc is None else nproc
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1; got {nproc}")
    if nproc > 1 and "RANK" not in os.environ:
        from hftpipe.training.distributed import launch_torchrun

        args = [*dirs, "-o", output] + (["--resume"] if resume else []) + \
            ([] if tracking else ["--no-tracking"])
        raise SystemExit(launch_torchrun(nproc, obj.params, args, obj.overrides))

    from hftpipe.training import train as run_train
    from hftpipe.training.trainer import default_checkpoint_dir

    checkpoint_dir = default_checkpoint_dir(output)
    with _tracker(cfg, tracking, dirs, checkpoint_dir, resume) as tracker:
        result = run_train(cfg, dirs[0] if len(dirs) == 1 else dirs, output, tracker=tracker, resume=resume,
                           checkpoint_dir=checkpoint_dir)
    if result.rank == 0:
        m = result.metrics
        click.echo(f"{result.model}: best val macro-F1 {m['best_val_macro_f1']:.4f} (accuracy "
                   f"{m['best_val_accuracy']:.4f}) at epoch {int(m['best_epoch'])} of {int(m['epochs_run'])}, "
                   f"{m['train_samples_per_s']:.0f} samples/s on {result.world_size} process(es) -> "
                   f"{result.bundle_dir}")
