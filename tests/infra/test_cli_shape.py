"""One CLI shape: every command line accepts ``--out`` and documents every option.

Each CLI's ``main`` runs in this process with ``parse_args`` stopped right after parsing (a
BaseException, which the error policy of infra.cli does not catch), so nothing heavy runs.
"""

from __future__ import annotations

import argparse
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from analysis import report
from taskcodecs import codec, evaluate, sweep, train
from taskcodecs.data import synthetic
from taskcompat import demo
from vinfo import cli as vinfo_cli

ROOT = Path(__file__).resolve().parents[2]


class Parsed(BaseException):
    def __init__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> None:
        super().__init__()
        self.parser, self.namespace = parser, namespace


@pytest.fixture
def stop_after_parse(monkeypatch):
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        raise Parsed(self, original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)


# (main, argv before --out, the namespace attribute that receives --out)
CLIS = {
    "train": (train.main, ["--config", "tiny-depth-base-proposed"], "out"),
    "evaluate": (evaluate.main, ["runs/x"], "out"),
    "evaluate --images": (evaluate.main, ["runs/x", "--images", "kodak"], "out"),
    "sweep": (sweep.main, ["--config", "tiny-depth-base-proposed", "--rate-weights", "1e-3"], "out"),
    "codec encode": (codec.main, ["encode", "--checkpoint", "c", "--input", "i.png"], "output"),
    "codec decode": (codec.main, ["decode", "--checkpoint", "c", "--input", "i.tcb"], "output"),
    "vinfo.estimate": (vinfo_cli.main, [], "out"),
    "analysis.report": (report.main, ["runs/"], "out"),
    "taskcompat.demo": (demo.main, ["--quick"], "out"),
    "data.synthetic": (synthetic.main, ["--train", "1", "--val", "1", "--height", "8",
                                        "--width", "8", "--seed", "0"], "out"),
}


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                missing += _undocumented(sub)
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"{parser.prog}: {'/'.join(action.option_strings) or action.dest}")
    return missing


@pytest.mark.parametrize("name", list(CLIS))
def test_every_cli_accepts_out_and_documents_every_option(name, stop_after_parse, tmp_path):
    main, argv, attribute = CLIS[name]
    with pytest.raises(Parsed) as parsed:
        main([*argv, "--out", str(tmp_path / "o")])
    assert str(getattr(parsed.value.namespace, attribute)) == str(tmp_path / "o")
    assert _undocumented(parsed.value.parser) == []


@pytest.mark.parametrize("module", [train, evaluate, sweep, codec, demo])
def test_the_codec_entry_points_have_one_shape(module):
    """build_parser() -> a parser, main(argv=None) -> int through infra.cli, and the
    ``__main__`` guard, in every ``python -m taskcodecs.<command>`` module and the demo's."""
    assert isinstance(module.build_parser(), argparse.ArgumentParser)
    signature = inspect.signature(module.main)
    assert list(signature.parameters) == ["argv"] and signature.parameters["argv"].default is None
    assert "cli.run(_main, argv)" in inspect.getsource(module.main)
    source = Path(module.__file__).read_text()
    assert source.rstrip().endswith('if __name__ == "__main__":\n    sys.exit(main())')


def test_train_out_flag_and_override_agree_or_are_refused(tmp_path):
    from taskcodecs.train import _with_out

    assert _with_out(["max_steps=1"], str(tmp_path)) == ["max_steps=1", f"out={tmp_path}"]
    assert _with_out([f"out={tmp_path}"], str(tmp_path)) == [f"out={tmp_path}"]
    with pytest.raises(ValueError, match="differs from out="):
        _with_out([f"out={tmp_path / 'a'}"], str(tmp_path / "b"))


def test_train_help_lists_config_keys_with_types_and_defaults(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = capsys.readouterr().out
    assert "max_steps" in text and "int = 100000" in text
    assert "synthetic.height" in text and "rate_weight             float | None = None" in text


def test_sweep_dry_run_prints_public_commands_and_validates_keys(tmp_path, capsys):
    argv = ["--config", "tiny-depth-base-proposed", "--rate-weights", "1e-3",
            "--out", str(tmp_path), "--dry-run"]
    assert sweep.main([*argv, "max_steps=3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("python -m taskcodecs.train --config tiny-depth-base-proposed --out ")
    assert " && python -m taskcodecs.evaluate " in line and "training.run" not in line
    assert sweep.main([*argv, "max_stepz=3"]) == 2
    assert "unknown config key 'max_stepz'" in capsys.readouterr().err
    assert sweep.main([*argv, "model_overrides.latent_chh=3"]) == 2
    assert "unknown config key 'latent_chh'" in capsys.readouterr().err
    assert not (tmp_path / "sweep.json").exists()


def test_compressai_future_warning_is_filtered_for_entry_points():
    """A fresh interpreter importing each entry point's module prints no FutureWarning."""
    code = ("import warnings; warnings.simplefilter('default'); "
            "import infra, taskcodecs.train, taskcodecs.evaluate, "
            "taskcodecs.codec, vinfo.cli")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "torch.jit.script" not in result.stderr
