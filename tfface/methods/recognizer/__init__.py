"""The face recognizer (ArcFace / CosFace margin softmax): model, recipe.

- :mod:`.model`: :class:`Recognizer` (``train_step``: margin cross-entropy), :func:`build_recognizer`;
- :mod:`.config`: :class:`RecognizerRecipe` and its sections, read strictly from YAML.
"""

from tfface.methods.recognizer.config import RecognizerRecipe
from tfface.methods.recognizer.model import Recognizer, build_recognizer

__all__ = ["Recognizer", "RecognizerRecipe", "build_recognizer"]
