"""KServe custom-predictor entry point, for running the server outside the CLI.

    python serving/predictor.py [serve.port=8080 serve.model_uri=models:/hftpipe-lob@champion ...]

Arguments are ``section.key=value`` config overrides on top of ``$HFTPIPE_PARAMS`` (default
``params.yaml``). The container in ``inferenceservice.yaml`` runs ``hftpipe serve``, which makes the same
call; all logic lives in :mod:`hftpipe.serving`.
"""

from __future__ import annotations

import logging
import os
import sys

from hftpipe.config import load_config
from hftpipe.errors import HftpipeError
from hftpipe.serving.server import serve


def main(argv: list[str] | None = None) -> int:
    """Load the config with overrides from ``argv`` and serve until stopped; return the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve(load_config(os.environ.get("HFTPIPE_PARAMS", "params.yaml"), list(argv or [])))
    except HftpipeError as exc:
        logging.getLogger("hftpipe.serving").error("%s", exc)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
