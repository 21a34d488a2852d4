"""WSGAN (He et al., "Bridging Weak and Strong Modalities via Adversarial Learning", AAAI 2019): match a weak
modality (sketch) to a strong one (photo) by sampling a conditional feature generator and scoring with a
Parzen density.

- :mod:`.config`: :class:`WSGANConfig` (every paper choice a field), :data:`VARIANTS`, :class:`WSGANRecipe`;
- :mod:`.nets`: F, G, D (WGAN critic, :class:`~.nets.Clip`), E, W_C;
- :mod:`.model`: the :class:`WSGAN` Keras model (the alternating D-phase / G-phase in ``train_step``);
- :mod:`.data`: the alternating input pipeline;
- :mod:`.scoring`: Parzen-window scores (Eq. 2-3) and identity aggregation;
- :mod:`.evaluation`: Recall@K, TPR@FPR, Table 4's intra/inter similarity.
"""

from tfface.methods.wsgan.config import VARIANTS, WSGANConfig, WSGANRecipe
from tfface.methods.wsgan.model import WSGAN

__all__ = ["VARIANTS", "WSGAN", "WSGANConfig", "WSGANRecipe"]
