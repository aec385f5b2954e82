"""The notebooks: committed without outputs, in sync with their generator, and each one runs
top to bottom at tiny settings (``TASKCOMPAT_NB_TINY=1``) with nbclient, leaving no error and
nothing on stderr."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("01_quickstart", "02_reproduce_figures", "03_vinformation_gap")


def _generator():
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOKS / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_notebooks_match_the_generator_and_have_no_outputs(tmp_path):
    built = _generator().build(tmp_path)
    assert [p.stem for p in built] == list(NAMES)
    for path in built:
        committed = NOTEBOOKS / path.name
        assert committed.read_text() == path.read_text(), f"{committed} differs from its generator"
        nb = nbformat.read(committed, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code)
        assert "parameters" in code[0].metadata.get("tags", [])
        assert "TASKCOMPAT_NB_TINY" in code[0].source


def test_notebook_03_draws_pvi_maps_in_the_reports_colour_scale():
    """One home for the PVI colour scale: notebook 03 imports the report's helper (which
    keeps all-zero maps white) instead of computing its own limit."""
    nb = nbformat.read(NOTEBOOKS / "03_vinformation_gap.ipynb", as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "from vinfo.report.figures import pvi_color_scale" in source
    assert "**scale" in source and "vmax=" not in source and "RdBu" not in source


def _outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == kind]


@pytest.mark.slow
@pytest.mark.parametrize("name, images, files", [
    ("01_quickstart", 2, ["01_quickstart/depth-base-proposed/checkpoints/best.safetensors"]),
    ("02_reproduce_figures", 5, ["02_reproduce_figures/report/report.html",
                                 "02_reproduce_figures/sweeps/depth-base/sweep.nc"]),
    ("03_vinformation_gap", 2, ["03_vinformation_gap/vinfo-baseline.nc",
                                "03_vinformation_gap/vinfo-proposed.nc"]),
])
def test_notebook_runs_at_tiny_settings(name, images, files, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("TASKCOMPAT_NB_TINY", "1")
    monkeypatch.setenv("TASKCOMPAT_NB_OUT", str(out))
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    # the kernel "python3" is launched with this interpreter (the venv's ipykernel)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = _outputs(nb, "error")
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    stderr = [o.text for o in _outputs(nb, "stream") if o.name == "stderr"]
    assert not stderr, stderr
    pngs = [o for o in _outputs(nb, "display_data") if "image/png" in o.data]
    assert len(pngs) >= images
    for relative in files:
        assert (out / relative).is_file(), relative
