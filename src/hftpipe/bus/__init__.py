"""The event bus edge: NATS JetStream connection, streams, subjects and the local nats-server launcher.

Domain code never imports this package; services (feeds, the signal service, the UI's stream page) do.
"""

from hftpipe.bus.connection import (
    STREAMS,
    BusClient,
    connect,
    ensure_streams,
    md_subject,
    msg_id,
    sig_subject,
    subject_token,
)
from hftpipe.bus.server import BusServer, server_status, start_server, stop_server

__all__ = [
    "STREAMS",
    "BusClient",
    "BusServer",
    "connect",
    "ensure_streams",
    "md_subject",
    "msg_id",
    "server_status",
    "sig_subject",
    "start_server",
    "stop_server",
    "subject_token",
]
