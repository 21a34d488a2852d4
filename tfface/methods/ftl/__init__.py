"""FTL (Yin et al., "Feature Transfer Learning for Face Recognition with Under-Represented Data", CVPR 2019):
enlarge the intra-class variance of under-represented (UR) classes by transferring the regular classes'
principal variation onto the UR centres, with an alternating two-stage regimen.

- :mod:`.config`: :class:`FTLConfig` (every paper choice a field), :data:`VARIANTS` (the spec's baselines
  and ablations), :class:`FTLRecipe`;
- :mod:`.nets`: Enc, Dec, the filtering network R, the classifier FC;
- :mod:`.losses`: Eq. 1-3 (reconstruction, softmax, m-L2);
- :mod:`.stats`: ``UpdateStats`` (Eq. 5 centres with flips, Eq. 6 covariance, PCA, the hard list) and Eq. 7;
- :mod:`.model`: :class:`FTLNetworks` and the phase models :class:`FTLJoint` (Eq. 4: pretraining, Stage 2,
  the baselines) and :class:`FTLStage1` (Algorithm 1's three-batch Stage 1);
- :mod:`.data`: the phases' input pipelines;
- :mod:`.evaluation`: closed-set and NN accuracy split regular / UR, the weight-norm bias, unseen-pair
  verification, the centre-estimation error.
"""

from tfface.methods.ftl.config import VARIANTS, FTLConfig, FTLRecipe
from tfface.methods.ftl.model import FTLJoint, FTLNetworks, FTLStage1

__all__ = ["VARIANTS", "FTLConfig", "FTLJoint", "FTLNetworks", "FTLRecipe", "FTLStage1"]
