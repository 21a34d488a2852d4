"""tfface: face-recognition research methods as TensorFlow 2 / Keras 3 software.

Data flows one way: ``tfface.data`` -> ``tfface.nets`` -> ``tfface.methods`` ->
``tfface.eval`` / ``tfface.export`` / ``tfface.retrieval``.
"""

__version__ = "0.1.0"
