"""Documented examples as tests (pytest-codeblocks, ``--codeblocks`` in pyproject's addopts).

Each fenced ``python`` block of README.md and docs/**/*.md runs in a fresh temporary directory, with
the face cache there too, so examples that write ``runs/...`` leave nothing in the checkout. Shell
blocks are not run here: ``tests/test_documented_commands.py`` runs the README's command chain with
small sizes (many doc shell blocks are set-up steps such as ``make test``, which would recurse).
"""

import os
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _is_codeblock(item) -> bool:
    return type(item).__name__ == "TestBlock" and hasattr(item, "obj")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="shell block: the README's commands run in tests/test_documented_commands.py")
    for item in items:
        if _is_codeblock(item) and item.obj.syntax != "python":
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if not _is_codeblock(item):
        yield
        return
    old_cwd, old_cache = os.getcwd(), os.environ.get("TFFACE_CACHE")
    with tempfile.TemporaryDirectory(prefix="tfface-doc-") as tmp:
        os.chdir(tmp)
        os.environ["TFFACE_CACHE"] = os.path.join(tmp, "cache")
        try:
            yield
        finally:
            os.chdir(old_cwd)
            if old_cache is None:
                os.environ.pop("TFFACE_CACHE", None)
            else:
                os.environ["TFFACE_CACHE"] = old_cache
