"""tfface.losses: training losses on tensors (no files, no strategies, no CLIs).

- :mod:`tfface.losses.ddl`: the Distribution Distillation Loss (Huang et al., arXiv 2002.03662).
"""

from tfface.losses.ddl import DDLBranch, DDLLossConfig, DistributionDistillationLoss

__all__ = ["DDLBranch", "DDLLossConfig", "DistributionDistillationLoss"]
