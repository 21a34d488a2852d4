"""The serving signature names, in one place: the export of embedders and translators, feature
translation and the tests of the standalone TF Serving clients (``export/*.py``, which cannot import
tfface and carry the same names as constants) all read them from here."""

#: an embedder's input (uint8 or preprocessed float images) and output
IMAGES = "images"
EMBEDDINGS = "embeddings"
#: a feature translator's input (old model's features) and output (new model's space)
SOURCE_FEATURES = "source_features"
TARGET_FEATURES = "target_features"
#: the signature TF Serving calls by default
SERVING_SIGNATURE = "serving_default"
#: a WSGAN generator's inputs (a weak-modality feature and a noise vector) and output (a strong-space feature)
WEAK_FEATURES = "weak_features"
NOISE = "z"
STRONG_FEATURES = "strong_features"
