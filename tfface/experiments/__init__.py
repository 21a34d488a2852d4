"""Experiments: the demo and the benchmarks, each a caller of :mod:`tfface.experiments.runner`."""
