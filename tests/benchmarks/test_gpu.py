"""benchmarks/gpu.py without a GPU: the no-CUDA message, and a --dry-run of its items on the
CPU at tiny sizes that writes its table into a copy of RESULTS.md."""

import importlib.util
import shutil
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "gpu.py")
gpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu)


def test_without_cuda_it_says_so_and_exits_0(tmp_path, capsys, monkeypatch):
    # this machine has no CUDA; on one that has, the test still checks the no-CUDA path
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    results = tmp_path / "RESULTS.md"
    results.write_text("untouched")
    assert gpu.main(["--results", str(results)]) == 0
    assert "no CUDA device here" in capsys.readouterr().out
    assert results.read_text() == "untouched"


def test_the_full_plan_fits_the_budget_by_its_caps():
    items = gpu.plan(dry=False)
    assert len([i for i in items if i["kind"] == "train"]) == 16  # 4 presets x amp x compile
    assert {(i["experiment"], i["size"][0]) for i in items if i["kind"] == "train"} == {
        (e, h) for _, e, h, _ in gpu.PRESETS}
    assert [i["kind"] for i in items if not i.get("compile")][-2:] == ["decode", "probes"]
    assert max(gpu.cap_of(i) for i in items) < 420 < 8 * 60


def test_dry_run_exercises_the_items_and_writes_the_table(tmp_path, capsys):
    results = tmp_path / "RESULTS.md"
    shutil.copy(ROOT / "benchmarks" / "RESULTS.md", results)
    before = results.read_text()
    assert gpu.main(["--dry-run", "--only", "train,probes", "--results", str(results)]) == 0
    text = results.read_text()
    assert "DRY RUN on the CPU" in text and "| `tiny-detection-base-proposed` | 2 x 64x128 |" in text
    assert text.count("| ok |") == 4 and "Probe fitting" in text and "steps/s" in text
    head, tail = before.split(gpu.BEGIN)[0], before.split(gpu.END)[1]
    assert text.startswith(head) and text.endswith(tail), "only the gpu.py section changes"
