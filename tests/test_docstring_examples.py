"""The ``>>>`` examples in the docstrings of these modules run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["tfface.data.weak_strong", "tfface.retrieval.density", "tfface.methods.r3an.linear", "tfface.methods.wsgan.scoring",
           "tfface.methods.wsgan.evaluation", "tfface.methods.wsgan.model", "tfface.methods.ftl.stats",
           "tfface.methods.ftl.losses", "tfface.methods.ftl.model", "tfface.data.long_tail",
           "tfface.methods.ganfaces.model"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
