"""Training: lazy window feeding, the DDP-ready loop and the ``train`` entry point."""

from hftpipe.training.distributed import DistInfo, setup_distributed
from hftpipe.training.trainer import FitResult, TrainResult, fit, train

__all__ = ["DistInfo", "FitResult", "TrainResult", "fit", "setup_distributed", "train"]
