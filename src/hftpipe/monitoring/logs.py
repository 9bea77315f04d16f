"""JSON-lines logs with ECS field names, so an ELK or Loki stack ingests every service's log as is.

``hftpipe --log-json ...`` or ``HFTPIPE_LOG_FORMAT=json`` (inherited by the services ``hftpipe run`` starts)
switches the root handler to :class:`EcsJsonFormatter`. A correlation id travels with an event from the feed
to its outcome: set it for a block with :func:`correlation` or per record with
``log.info(..., extra={"correlation_id": cid})``; it is written as ECS ``trace.id``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

ECS_VERSION = "8.11.0"
ENV_FORMAT = "HFTPIPE_LOG_FORMAT"
_CORRELATION: contextvars.ContextVar[str | None] = contextvars.ContextVar("hftpipe_correlation_id", default=None)
# Attributes every LogRecord has: anything else on a record came from ``extra=`` and is kept under "hftpipe".
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


@contextlib.contextmanager
def correlation(correlation_id: str | None) -> Iterator[None]:
    """Tag every record logged inside the block (this thread or task) with ``correlation_id``."""
    token = _CORRELATION.set(correlation_id)
    try:
        yield
    finally:
        _CORRELATION.reset(token)


class EcsJsonFormatter(logging.Formatter):
    """One JSON object per line: @timestamp, log.level, log.logger, message, process, service, error, trace.id."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service or os.environ.get("HFTPIPE_SERVICE") or "hftpipe"

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "@timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "log.level": record.levelname.lower(),
            "message": record.getMessage(),
            "ecs.version": ECS_VERSION,
            "log.logger": record.name,
            "log.origin.function": record.funcName,
            "log.origin.file.line": record.lineno,
            "process.pid": record.process,
            "process.thread.name": record.threadName,
            "service.name": self.service,
        }
        cid = getattr(record, "correlation_id", None) or _CORRELATION.get()
        if cid:
            doc["trace.id"] = str(cid)
        if record.exc_info and record.exc_info[0] is not None:
            doc["error.type"] = record.exc_info[0].__name__
            doc["error.message"] = str(record.exc_info[1])
            doc["error.stack_trace"] = "".join(traceback.format_exception(*record.exc_info))
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and k != "correlation_id"}
        if extra:
            doc["hftpipe"] = extra
        return json.dumps(doc, default=str, ensure_ascii=False)


def wants_json(flag: bool = False) -> bool:
    """JSON logs asked for by the flag or by ``HFTPIPE_LOG_FORMAT=json``."""
    return flag or os.environ.get(ENV_FORMAT, "").strip().lower() == "json"


def use_json_logs(level: int = logging.WARNING, service: str | None = None) -> None:
    """Replace the root logger's handlers with one JSON-lines handler on stderr."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EcsJsonFormatter(service))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
