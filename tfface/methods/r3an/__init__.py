"""R3AN (Chen et al., CVPR 2019): cross-model feature translation, its ablations and baselines.

- :mod:`.config`: :class:`R3ANConfig` (the model), :data:`VARIANTS` (Table 3), :class:`R3ANRecipe`
  (one ``tfface train`` experiment);
- :mod:`.model`: the :class:`R3AN` Keras model (Algorithm 1 in ``train_step``);
- :mod:`.linear`: the closed-form linear baseline :func:`fit_linear_translator` and its ridge choice
  :func:`select_ridge` (identity-grouped cross-validation);
- :mod:`.nets`: G, E and D of Table 1, the FC baseline;
- :mod:`.data`: (face, source feature, target feature) triplets;
- :mod:`.evaluation`: cross-model MegaFace top-1, compatibility matrix, Fig. 2 projection.
"""

from tfface.methods.r3an.config import VARIANTS, R3ANConfig, R3ANRecipe
from tfface.methods.r3an.linear import fit_linear_translator, select_ridge
from tfface.methods.r3an.model import R3AN

__all__ = ["R3AN", "R3ANConfig", "R3ANRecipe", "VARIANTS", "fit_linear_translator", "select_ridge"]
