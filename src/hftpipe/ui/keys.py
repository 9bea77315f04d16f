"""Keys under which the app factory stores shared objects on the Flask app (flask's ``get_db`` pattern).

A leaf module: blueprints import the keys from here, not from ``ui/app.py`` (which imports the
blueprints), so there is no import circle and no function-local import to hide one.
"""

from __future__ import annotations

CONFIG_KEY = "HFTPIPE_CONFIG"  # app.config: the loaded hftpipe Config
CREDENTIALS_KEY = "HFTPIPE_CREDENTIALS"  # app.config: ui.security.Credentials
SERVING_KEY = "hftpipe.serving"  # app.extensions: ui.client.ServingClient
MLFLOW_PROBE_KEY = "hftpipe.mlflow_probe"  # app.extensions: ui.app.MlflowProbe
