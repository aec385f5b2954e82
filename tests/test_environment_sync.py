"""environment.yml must list the same requirements as pyproject.toml, extras included (conda
users get the same pins and everything make test / make demo need); the Makefile installs
the extras those need."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {"dev", "notebooks", "cluster"} <= set(extras)
    wanted = set(project["dependencies"]).union(*extras.values())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {item for item in pip_section if not item.startswith("-e")}
    assert listed == wanted
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    assert python == ["python=3.11"]
    assert project["requires-python"].startswith(">=3.11")


def test_heavy_tools_are_extras_and_the_makefile_installs_them():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split("=")[0].split("<")[0] for d in project["dependencies"]}
    assert not names & {"jupyterlab", "ipywidgets", "ipykernel", "nbclient", "nbformat",
                        "submitit", "pytest", "ruff"}
    assert "imagecodecs" in names
    assert "-e '.[dev,notebooks,cluster]'" in (ROOT / "Makefile").read_text()
