"""The benchmark scripts are run by hand, not by the suite: check at least that each one still
imports against the package (a renamed or moved function breaks them silently otherwise)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parents[1] / "benchmarks").glob("*.py"))


def test_there_are_benchmark_scripts():
    assert len(SCRIPTS) >= 9


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_a_benchmark_script_imports_and_has_a_main(path):
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # runs its imports, not its measurement (that is under __main__)
    assert callable(getattr(module, "main", None)) and module.__doc__
