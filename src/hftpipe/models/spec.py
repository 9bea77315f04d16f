"""ModelSpec: the settings that define a network, one object from the config to ``build_model`` to the bundle.

``train.model/hidden/dropout`` plus the data's book levels and the window come together here once; the
trainer builds its module from the spec, ``save_bundle`` writes the spec's keys into ``bundle.json`` and
``load_bundle`` rebuilds the same module from them. A new setting is added in one place, not three.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from hftpipe.models.nets import build_model


@dataclass(frozen=True)
class ModelSpec:
    """Architecture name and sizes; ``build()`` validates them (ConfigError) and returns a fresh module."""

    name: str
    levels: int
    window: int
    hidden: int = 64
    dropout: float = 0.0

    @classmethod
    def from_train(cls, tcfg: Any, levels: int) -> ModelSpec:
        """From the ``train`` config section and the feature set's book levels."""
        return cls(tcfg.model, int(levels), int(tcfg.window), int(tcfg.hidden), float(tcfg.dropout))

    @classmethod
    def from_bundle_info(cls, info: Mapping[str, Any]) -> ModelSpec:
        """From ``bundle.json`` (KeyError when a key is missing: the caller says which bundle)."""
        return cls(str(info["model"]), int(info["levels"]), int(info["window"]), int(info["hidden"]),
                   float(info["dropout"]))

    def to_bundle_info(self) -> dict[str, Any]:
        """The ``bundle.json`` keys this spec owns (``model`` is the architecture name there)."""
        return {"model": self.name, "levels": self.levels, "window": self.window, "hidden": self.hidden,
                "dropout": self.dropout}

    def build(self) -> nn.Module:
        return build_model(self.name, self.levels, self.window, self.hidden, self.dropout)
