"""Import kserve without letting it read our command line.

``kserve.model_server`` parses ``sys.argv`` at import time (and argparse prefix-matching turns e.g. our
``--grpc`` into an ambiguous-option exit). Every hftpipe module imports kserve through here, with argv
hidden, and passes every server setting explicitly.
"""

from __future__ import annotations

import sys

_argv, sys.argv = sys.argv, sys.argv[:1]
try:
    import kserve
    from kserve import model_server
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.errors import (
        InvalidInput,
        ModelNotFound,
        ModelNotReady,
        ServerNotLive,
        ServerNotReady,
        UnsupportedProtocol,
    )
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
    from kserve.protocol.rest.server import RESTServer
    from kserve.protocol.rest.v2_datamodels import InferenceRequest
finally:
    sys.argv = _argv

__all__ = ["FASTAPI_APP_IMPORT_STRING", "DataPlane", "GRPCServer", "InferOutput", "InferRequest", "InferResponse",
           "InferenceRequest", "InvalidInput", "ModelNotFound", "ModelNotReady", "RESTServer", "ServerNotLive",
           "ServerNotReady", "UnsupportedProtocol", "kserve", "model_server"]
