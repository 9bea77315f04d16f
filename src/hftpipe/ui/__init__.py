"""Flask trader front end: live replay through the model server, models, runs, health (edge: flask).

``create_app(config=None)`` builds the app; ``hftpipe ui`` runs it. The UI talks to the model server over
HTTP only and never loads a model.
"""

from hftpipe.ui.app import create_app

__all__ = ["create_app"]
