"""GANFaces (Gecer, Bhattarai, Kittler, Kim, "Semi-supervised Adversarial Learning to Generate Photorealistic
Face Images of New Identities from 3D Morphable Model", ECCV 2018): refine 3DMM renders of new identities
into realistic faces with a forward cycle, BEGAN discriminators, a pair-matching G' and a set-based
identity loss, then use the refined images as labelled training data.

- :mod:`.config`: :class:`GANFacesConfig` (every paper choice a field), :data:`VARIANTS`, :class:`GANFacesRecipe`;
- :mod:`.nets`: G, G' (= D_P), the BEGAN autoencoders D_R / D_S, the small embedder C;
- :mod:`.model`: the :class:`GANFaces` Keras model (the simultaneous update of Eqs. 8-10 in ``train_step``);
- :mod:`.data`: the toy world's four domains and the input pipeline.
"""

from tfface.methods.ganfaces.config import VARIANTS, GANFacesConfig, GANFacesRecipe
from tfface.methods.ganfaces.model import GANFaces

__all__ = ["VARIANTS", "GANFaces", "GANFacesConfig", "GANFacesRecipe"]
