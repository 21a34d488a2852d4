"""R3AN (Chen et al., CVPR 2019): cross-model feature translation, its ablations and baselines.

- :mod:`.model`: the :class:`R3AN` Keras model (Algorithm 1 in ``train_step``), :class:`R3ANConfig`,
  :func:`fit_linear_translator`;
- :mod:`.nets`: G, E and D of Table 1, the FC baseline;
- :mod:`.data`: (face, source feature, target feature) triplets;
- :mod:`.evaluation`: cross-model MegaFace top-1, compatibility matrix, Fig. 2 projection.
"""

from tfface.methods.r3an.model import R3AN, VARIANTS, R3ANConfig, fit_linear_translator

__all__ = ["R3AN", "R3ANConfig", "VARIANTS", "fit_linear_translator"]
