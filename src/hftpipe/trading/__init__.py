"""Acting on the signal: risk engine, execution (fill) model, policies and the backtest core.

Domain code only (no bus, no HTTP, no MLflow): the backtest, the paper trader and the RL environment
share these objects, so a number measured offline means the same thing live.
"""

from hftpipe.trading.risk import (
    Decision,
    DenyReason,
    HaltCause,
    RiskEngine,
    RiskLimits,
    RiskState,
    StateChange,
)

__all__ = ["Decision", "DenyReason", "HaltCause", "RiskEngine", "RiskLimits", "RiskState", "StateChange"]
