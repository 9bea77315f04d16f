"""KFP v2 lightweight components: one per pipeline step, each body one call into ``hftpipe``.

The base image comes from one setting, ``pipeline.base_image`` in params.yaml (``HFTPIPE_IMAGE``
overrides it at compile time). Locally, `kfp.local`'s SubprocessRunner ignores the image and runs the
bodies in this environment, where hftpipe is installed.
"""

from __future__ import annotations

import os
from pathlib import Path

from hftpipe.config import load_config

_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
BASE_IMAGE: str = os.environ.get("HFTPIPE_IMAGE") or load_config(_PARAMS).pipeline.base_image
