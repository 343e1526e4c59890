"""The import direction of the package (docs/architecture.md): each layer loads only what it
needs, checked in a fresh interpreter through ``sys.modules``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("lightning", "torchrl", "gymnasium", "matplotlib", "ray", "tensordict")


def loaded_after(statement: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after running ``statement`` in a fresh process."""
    listing = "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    code = f"import sys, json; {statement}; {listing}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "module", ["s2ac_lit", "s2ac_lit.kernels", "s2ac_lit.svgd", "s2ac_lit.knn"]
)
def test_the_maths_loads_torch_only(module: str) -> None:
    loaded = loaded_after(f"import {module}")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
    if module != "s2ac_lit":
        assert "torch" in loaded


def test_the_actor_and_networks_load_neither_gymnasium_nor_lightning_nor_matplotlib() -> None:
    loaded = loaded_after("import s2ac_lit.actor, s2ac_lit.networks")
    assert not loaded & {"lightning", "gymnasium", "matplotlib", "ray"}


def test_the_registry_loads_no_analysis_code_nor_lightning() -> None:
    code = (
        "import s2ac_lit.algorithms; "
        "bad = [m for m in sys.modules if m.startswith('s2ac_lit.analysis') "
        "or m.startswith('s2ac_lit.trainer') or m.split('.')[0] in ('lightning', 'matplotlib')]; "
        "print(json.dumps(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", f"import sys, json; {code}"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == []


def test_the_benchmark_driver_loads_no_torch() -> None:
    """The harness's driver reads run folders and starts fit processes; torch stays out of it
    (the run-folder names come from the torch-free ``s2ac_lit.trainer.layout``)."""
    loaded = loaded_after(
        "import s2ac_lit.benchmark.runner, s2ac_lit.benchmark.results, s2ac_lit.trainer.layout"
    )
    assert "torch" not in loaded
