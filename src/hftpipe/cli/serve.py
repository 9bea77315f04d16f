"""``hftpipe serve``: the KServe model server for the champion (or a local bundle)."""

from __future__ import annotations

import dataclasses

import click


def register(group: click.Group) -> None:
    group.add_command(serve)


@click.command()
@click.option("--model-uri", help="models:/NAME@champion or a bundle folder (default: serve.model_uri).")
@click.option("--host", help="Interface to bind (default: serve.host, 127.0.0.1).")
@click.option("--port", type=int, help="REST port (default: serve.port).")
@click.option("--grpc/--no-grpc", "grpc", default=None, help="Also serve gRPC (default: serve.grpc, off).")
@click.option("--reload-interval", type=float,
              help="Seconds between champion alias checks; 0 turns hot reload off (default: serve.reload_interval_s).")
@click.pass_obj
def serve(obj, model_uri: str | None, host: str | None, port: int | None, grpc: bool | None,
          reload_interval: float | None) -> None:
    """Serve the model on V1 and V2 REST (window and streaming mode) with hot reload of the champion."""
    from hftpipe.serving.server import serve as run_server

    cfg = obj.config
    given = {"model_uri": model_uri, "host": host, "port": port, "grpc": grpc,
             "reload_interval_s": reload_interval}
    serve_cfg = dataclasses.replace(cfg.serve, **{k: v for k, v in given.items() if v is not None})
    click.echo(f"loading {serve_cfg.model_uri} ...", err=True)
    run_server(cfg.replace(serve=serve_cfg))
