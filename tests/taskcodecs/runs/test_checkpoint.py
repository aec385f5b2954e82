import json

import pytest
import torch
from torch import nn

from taskcodecs.runs.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
    unwrap_key,
    verify_checkpoint,
)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_weights_metadata_and_optimizer_round_trip(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "last", model, {"step": 7, "codec": "tiny"},
                           optimizers={"main": opt}, extra_tensors={"rng": torch.arange(3)})
    assert path.suffix == ".safetensors" and (tmp_path / "last.json").is_file()

    fresh = _model(seed=1)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    out = load_checkpoint(tmp_path / "last", fresh, optimizers={"main": fresh_opt})
    assert out["metadata"]["step"] == 7 and out["metadata"]["codec"] == "tiny"
    assert torch.equal(out["extra"]["rng"], torch.arange(3))
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), fresh_opt.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid in s1["state"]:
        assert torch.equal(s1["state"][pid]["exp_avg_sq"], s2["state"][pid]["exp_avg_sq"])
        assert torch.equal(torch.as_tensor(s1["state"][pid]["step"]),
                           torch.as_tensor(s2["state"][pid]["step"]))


def test_wrapper_prefixes_are_stripped(tmp_path):
    model = _model()
    state = {f"module._orig_mod.{k}": v for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path / "ckpt", state)
    out = load_checkpoint(tmp_path / "ckpt.safetensors", _model(seed=3))
    assert set(out["state_dict"]) == set(model.state_dict())
    assert unwrap_key("module.module.a.b") == "a.b"


def test_wrong_architecture_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _model())
    with pytest.raises(CheckpointError, match="do not match Linear"):
        load_checkpoint(tmp_path / "ckpt", nn.Linear(4, 2))


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.json: JSON file not found"):
        read_metadata(tmp_path / "nothing")
    (tmp_path / "fake.json").write_text(json.dumps({"format_version": 1}))
    (tmp_path / "fake.safetensors").write_bytes(b"\x80\x04 this is a pickle, not safetensors")
    with pytest.raises(CheckpointError, match="fake.json: unverified checkpoint"):
        load_checkpoint(tmp_path / "fake", _model())  # no manifest, no checksum: refused
    with pytest.raises(CheckpointError, match="fake.safetensors: not a readable safetensors"):
        load_checkpoint(tmp_path / "fake", _model(), unverified=True)
    (tmp_path / "old.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(CheckpointError, match="format version 1"):
        read_metadata(tmp_path / "old")
    (tmp_path / "cut.json").write_text('{"format_version": 1, "st')
    with pytest.raises(CheckpointError, match="cut.json: not valid JSON"):
        read_metadata(tmp_path / "cut")


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    model = _model()
    save_checkpoint(tmp_path / "ckpt", model, {"step": 1})
    before = (tmp_path / "ckpt.safetensors").read_bytes()
    with pytest.raises(TypeError, match="not JSON-serializable"):
        save_checkpoint(tmp_path / "ckpt", _model(seed=5), {"step": object()})
    # weights are replaced only together with metadata; no temporary file is left behind
    assert read_metadata(tmp_path / "ckpt")["step"] == 1
    assert (tmp_path / "ckpt.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json", "ckpt.safetensors"]


def _strip(path, *keys):
    meta_path = path.with_suffix(".json")
    record = json.loads(meta_path.read_text())
    for key in keys:
        del record[key]
    meta_path.write_text(json.dumps(record))


def test_the_record_checks_itself(tmp_path):
    path = tmp_path / "ckpt"
    save_checkpoint(path, _model(), {"step": 10})
    meta_path = path.with_suffix(".json")
    assert len(read_metadata(path)["record_sha256"]) == 64
    assert verify_checkpoint(path)["step"] == 10
    text = meta_path.read_text()
    meta_path.write_text(text.replace('"step": 10', '"step": 12'))  # issue 22 (b)
    for call in (read_metadata, verify_checkpoint, lambda p: load_checkpoint(p, _model())):
        with pytest.raises(CheckpointError, match="does not match its own checksum"):
            call(path)
    meta_path.write_text(text)
    _strip(path, "weights")  # a manifest removed from a record that checks itself
    with pytest.raises(CheckpointError, match="does not match its own checksum"):
        load_checkpoint(path, _model(), unverified=True)


@pytest.mark.parametrize("keys, reason", [
    (("weights", "record_sha256"), "no weights manifest and no record checksum"),
    (("record_sha256",), "no record checksum")])
def test_an_unverifiable_checkpoint_is_refused_unless_asked(tmp_path, caplog, keys, reason):
    path = tmp_path / "ckpt"
    save_checkpoint(path, _model(1), {"step": 3})
    _strip(path, *keys)
    for call in (verify_checkpoint, lambda p: load_checkpoint(p, _model())):
        with pytest.raises(CheckpointError, match=f"unverified checkpoint \\({reason}.*unverified=True"):
            call(path)
    model = _model(0)
    with caplog.at_level("WARNING"):
        load_checkpoint(path, model, unverified=True)
    assert "unverified checkpoint" in caplog.text
    assert torch.equal(model[0].weight, _model(1)[0].weight)
