"""tfface.methods: one Keras model per method, each with its own ``train_step``."""

from tfface.methods.ddl import DDL, DDLHistogramCallback, build_ddl
from tfface.methods.r3an import R3AN, VARIANTS, R3ANConfig, fit_linear_translator
from tfface.methods.recognizer import Recognizer, build_recognizer

__all__ = ["DDL", "DDLHistogramCallback", "R3AN", "R3ANConfig", "Recognizer", "VARIANTS", "build_ddl",
           "build_recognizer", "fit_linear_translator"]
