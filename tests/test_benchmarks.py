"""The benchmark scripts under benchmarks/ stay runnable as the package moves: those that measure what a
user asks for go through ``import cnnbench``; those that measure one component (the decoder, the training
step, the energy meter, the comparison's phases) import it, and these tests break when it moves."""

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("*.py"))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)  # its main() runs only as a script
    finally:
        sys.path.remove(str(path.parent))
    return module


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.stem)
def test_every_benchmark_imports_what_it_uses(path):
    module = _load(path)
    assert callable(module.main)


def test_every_phase_compare_phases_times_exists_in_this_checkout():
    """compare_phases skips a timed function an older checkout lacks; in this one each must exist, or its
    seconds fall silently into the phase around it."""
    phases = _load(next(p for p in BENCHMARKS if p.stem == "compare_phases")).PHASES
    missing = []
    for targets in phases.values():
        for module_name, path in targets:
            owner = importlib.import_module(module_name)
            for part in path.split("."):
                owner = getattr(owner, part, None)
            if not callable(owner):
                missing.append(f"{module_name}.{path}")
    assert len(phases) == 20 and missing == []
