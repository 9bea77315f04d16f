"""Models over book windows and the bundle that carries one to serving."""

from hftpipe.models.bundle import CLASS_NAMES, ModelBundle, load_bundle, read_bundle_json, save_bundle
from hftpipe.models.nets import MODEL_NAMES, N_CLASSES, build_model

__all__ = ["CLASS_NAMES", "MODEL_NAMES", "N_CLASSES", "ModelBundle", "build_model", "load_bundle",
           "read_bundle_json", "save_bundle"]
