"""DDL (Huang et al., arXiv 2002.03662): distribution distillation loss fine-tuning.

- :mod:`.model`: the :class:`DDL` Keras model (margin loss + DDL in ``train_step``), :func:`build_ddl`;
- :mod:`.data`: easy / hard splits and the teacher / student batch builder;
- :mod:`.evaluation`: per-subset TAR@FAR, rank-1, overlap, easy-hard gap, the Fig. 1 plot.
The loss itself (Eqs. 1-7) is :mod:`tfface.losses.ddl`.
"""

from tfface.methods.ddl.model import DDL, DDLHistogramCallback, build_ddl

__all__ = ["DDL", "DDLHistogramCallback", "build_ddl"]
