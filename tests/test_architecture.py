"""The dependency rule of the README ("Layout and the dependency rule"), checked on the source.

Every import of the five packages is read from the AST, function-local ones included (a
local import may keep a command line light; it may not hide a cycle), and three things must
hold: no module imports itself round a cycle; a package imports only the packages below it
(infra < taskcodecs < vinfo < analysis < taskcompat, vinfo reaching taskcodecs only inside
``vinfo/adapter/``); inside taskcodecs a module imports only its own stage or earlier ones,
and inside vinfo only its own floor or lower ones.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("infra", "taskcodecs", "vinfo", "analysis", "taskcompat")
# Which packages each may import (besides itself).
ALLOWED = {
    "infra": set(),
    "taskcodecs": {"infra"},
    "vinfo": {"infra"},  # + taskcodecs, in vinfo.adapter only
    "analysis": {"infra", "taskcodecs", "vinfo"},
    "taskcompat": {"infra", "taskcodecs", "vinfo", "analysis"},
}
# The codec library's stages, in pipeline order; a module imports its own stage or earlier.
STAGES = (
    "taskcodecs.data",              # datasets: COCO, Cityscapes, synthetic scenes
    "taskcodecs.layers",            # building blocks: residual blocks, masked convs, resampling
    "taskcodecs.coding",            # entropy models, rANS, the bitstream
    "taskcodecs.models",            # task heads, losses, base and enhancement codecs
    "taskcodecs.experiments",       # the registry, the experiment table, typed configs
    "taskcodecs.runs",              # run directories, checkpoints, a run's data and model
    "taskcodecs.training",          # the trainer and its outputs, DDP, rate control
    "taskcodecs.evaluation",        # metrics and eval.nc
    "taskcodecs.sweeps",            # grids of runs, local or as SLURM job arrays
    "taskcodecs",                   # the command lines (train, evaluate, codec, sweep)
)
# The estimator's floors, lowest first; a module imports its own floor or lower ones.
VINFO_FLOORS = (
    "vinfo.report",                 # the report reads a finished Dataset: no other vinfo
    "vinfo.errors",                 # VinfoInputError
    "vinfo.adapter",                # the one door into taskcodecs
    "vinfo.probes",                 # likelihoods, AR cores, families, the probe and its stats
    "vinfo.fit",                    # settings, splits, the fit loop, batched/nested, null bank
    "vinfo.stats",                  # PVI and per-family estimates, bootstrap, curves, MDL
    "vinfo",                        # inputs, config, results, pipeline, API, command lines
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(modules: dict[str, Path]) -> dict[str, set[tuple[str, int]]]:
    """module -> {(imported module of ours, line)}; ``from pkg import sub`` resolves to the
    submodule when there is one."""
    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
            for target in targets:
                if target.split(".")[0] in PACKAGES:
                    found = resolve(target)
                    if found and found != name:
                        edges[name].add((found, node.lineno))
    return edges


MODULES = _modules()
EDGES = _imports(MODULES)


def _stage(module: str, stages: tuple[str, ...] = STAGES) -> int:
    """The index of the most specific stage (or floor) that holds ``module``."""
    return max((len(stage), i) for i, stage in enumerate(stages)
               if module == stage or module.startswith(stage + "."))[1]


def test_the_tree_is_read_whole():
    assert len(MODULES) > 100 and all(pkg in MODULES for pkg in PACKAGES)
    assert sum(len(e) for e in EDGES.values()) > 300


def test_no_import_cycles():
    graph = {m: {t for t, _ in EDGES[m]} for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == [], f"import cycles: {cycles}"


def test_packages_import_only_the_packages_below_them():
    bad = []
    for module, targets in EDGES.items():
        source = module.split(".")[0]
        for target, line in targets:
            dest = target.split(".")[0]
            if dest == source or dest in ALLOWED[source]:
                continue
            if source == "vinfo" and dest == "taskcodecs" and module.startswith("vinfo.adapter"):
                continue
            bad.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}")
    assert bad == [], "imports against the dependency rule:\n" + "\n".join(sorted(bad))


def test_codec_stages_import_only_their_own_or_earlier_stages():
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line} ({STAGES[_stage(m)]}) imports {t} "
           f"({STAGES[_stage(t)]}, a later stage)"
           for m, targets in EDGES.items() if m.startswith("taskcodecs")
           for t, line in targets if t.startswith("taskcodecs") and _stage(t) > _stage(m)]
    assert bad == [], "\n".join(sorted(bad))


def test_a_module_is_in_its_most_specific_stage():
    # (the package itself is the last stage and holds every module: it must not win)
    assert [_stage(m) for m in ("taskcodecs.data.coco", "taskcodecs.coding", "taskcodecs.codec")] \
        == [0, 2, len(STAGES) - 1]
    assert [_stage(m, VINFO_FLOORS) for m in ("vinfo.report.schema", "vinfo.fit.loop", "vinfo.api")] \
        == [0, 4, len(VINFO_FLOORS) - 1]


def test_vinfo_floors_import_only_their_own_or_lower_floors():
    def floor(module: str) -> int:
        return _stage(module, VINFO_FLOORS)

    assert set(VINFO_FLOORS) <= set(MODULES)  # every floor exists
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line} ({VINFO_FLOORS[floor(m)]}) imports {t} "
           f"({VINFO_FLOORS[floor(t)]}, a higher floor)"
           for m, targets in EDGES.items() if m.startswith("vinfo")
           for t, line in targets if t.startswith("vinfo") and floor(t) > floor(m)]
    assert bad == [], "\n".join(sorted(bad))


def test_nothing_imports_the_vinfo_estimate_entry_point():
    # ``vinfo.estimate`` is the API function; importing the module of that name (which only
    # runs ``python -m vinfo.estimate``) would put the module in the function's place.
    users = [m for m, targets in EDGES.items() if any(t == "vinfo.estimate" for t, _ in targets)]
    assert users == []


@pytest.mark.parametrize("source", ["taskcodecs", "vinfo", "infra"])
def test_the_checker_catches_a_violating_import(tmp_path, source):
    """The rule is not vacuous: a module that imports upwards is reported."""
    fake = {f"{source}.fake": tmp_path / "fake.py", "analysis.report": tmp_path / "r.py"}
    (tmp_path / "r.py").write_text("")
    (tmp_path / "fake.py").write_text("def f():\n    from analysis.report import main\n")
    edges = _imports(fake)
    assert edges[f"{source}.fake"] == {("analysis.report", 2)}
    assert "analysis" not in ALLOWED[source]
