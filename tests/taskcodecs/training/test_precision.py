"""Mixed precision (amp=bf16/fp16) and compile=true, on the CPU: steps that lower the loss,
float32 likelihoods, exact resume with the gradient scaler, bit-exact bitstreams."""

import pytest
import torch
from safetensors.torch import load_file

from taskcodecs.evaluation.evaluate import evaluate_run
from taskcodecs.runs.checkpoint import read_metadata
from taskcodecs.runs.codecs import load_codec
from taskcodecs.runs.links import checkpoint_path
from taskcodecs.runs.run_data import build_dataset, collate_for, ensure_data
from taskcodecs.runs.run_model import build_model
from taskcodecs.training.precision import Precision
from taskcodecs.training.run import resolve_config, train

NAME = "tiny-depth-base-proposed"
SMALL = {"synthetic.train": 4, "synthetic.val": 2, "log_every": 1, "num_workers": 0}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")


def _cfg(cache, out, **overrides):
    return resolve_config(NAME, {**SMALL, "synthetic_cache": str(cache), "out": str(out), **overrides})


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_an_amp_step_lowers_the_float32_loss(amp, cache, tmp_path):
    # rate_weight 0.01: at the preset's 15 an untrained base (0 bpp: every latent rounds to
    # the same value) gains rate on its first step faster than it loses distortion
    cfg = _cfg(cache, tmp_path / "run", amp=amp, rate_weight=0.01)
    dataset = build_dataset(cfg, ensure_data(cfg), "train", train=False)
    batch = collate_for(cfg.dataset)([dataset[0], dataset[1]])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    params = list(model.trainable_parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)

    def loss32() -> float:
        with torch.no_grad():
            return float(model.loss(batch, model(batch))["loss"])

    seen = []
    model.f_b.register_forward_hook(lambda m, i, o: seen.append(o.dtype))  # returns None
    precision = Precision(amp, torch.device("cpu"))
    before = loss32()
    skipped = 0
    while True:
        with precision.autocast():
            out = model(batch)
            loss = model.loss(batch, out)["loss"]
        amp_dtype = seen[-1]
        if precision.step(loss, optimizer, params, clip=1.0):
            break
        skipped += 1  # fp16: the scaler skipped an overflowing step and halved its scale
        assert loss32() == before, "a skipped step must leave the weights unchanged"
        assert skipped < 20
    after = loss32()
    assert amp_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[amp], "autocast on"
    assert out["likelihoods"]["y"].dtype == torch.float32, "entropy model in float32"
    assert all(p.dtype == torch.float32 for p in params), "master weights stay float32"
    assert after < before, (amp, before, after)
    if amp == "fp16":
        assert precision.state_dict()["scale"] == 65536.0 / 2**skipped
    else:
        assert skipped == 0 and precision.state_dict() is None


def test_fp16_run_resumes_exactly_and_its_bitstreams_decode_bit_exactly(cache, tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    train(_cfg(cache, a, amp="fp16", max_steps=4, val_every=2))
    train(_cfg(cache, b, amp="fp16", max_steps=2, val_every=2))
    train(resolve_config(None, {"resume": str(b), "max_steps": 4}))
    meta_a, meta_b = (read_metadata(checkpoint_path(r, "last")) for r in (a, b))
    assert meta_a["trainer"]["grad_scaler"]["scale"] < 65536.0, "fp16 overflowed and backed off"
    assert meta_a["trainer"]["grad_scaler"] == meta_b["trainer"]["grad_scaler"]
    ta, tb = (load_file(str(checkpoint_path(r, "last").with_suffix(".safetensors"))) for r in (a, b))
    assert [k for k in ta if not torch.equal(ta[k], tb[k])] == [], "resume with the scaler is exact"

    cfg = _cfg(cache, a)
    image = build_dataset(cfg, ensure_data(cfg), "val", train=False)[0]["image"]
    encoder, decoder = (load_codec(checkpoint_path(a, "best")) for _ in range(2))
    coded = encoder.compress_latents(image)
    data = coded.to_bytes()
    first, second = decoder.decompress(data), decoder.decompress(data)
    assert torch.equal(first["y_hat"]["base"], coded.y_hat["base"]), "decoder sees encoder's ŷ"
    assert torch.equal(first["x_hat"], second["x_hat"])
    assert encoder.compress(image) == data, "coding is deterministic"
    ds = evaluate_run(a, limit=1)
    assert float(ds.bpp_actual.sel(layer="base")[0]) == pytest.approx(len(data) * 8 / image[0].numel())


def test_compile_true_compiles_the_transforms_and_keeps_checkpoints_plain(cache, tmp_path, caplog):
    caplog.set_level("INFO", logger="taskcodecs.training.run")
    # aot_eager: the real dynamo + AOTAutograd path without inductor's C++ code generation,
    # which takes minutes on a 2-core CPU (compile_backend=inductor is the default)
    common = {"max_steps": 2, "val_every": 2, "seed": 3}
    eager = train(_cfg(cache, tmp_path / "eager", **common))
    compiled = train(_cfg(cache, tmp_path / "compiled", compile=True, compile_backend="aot_eager",
                          **common))
    # the full-resolution tiny base has f_b, g_b, g_s (no down/up transforms)
    assert ("compile=true: 3 transforms compiled (aot_eager backend): f_b, g_b, g_s"
            in caplog.text), caplog.text[-2000:]
    te, tc = (load_file(str(checkpoint_path(r, "last").with_suffix(".safetensors")))
              for r in (eager, compiled))
    assert sorted(te) == sorted(tc), "no _orig_mod. prefixes: compiled in place"
    worst = max(float((te[k].float() - tc[k].float()).abs().max()) for k in te)
    assert worst < 1e-4, f"compiled training drifted from eager by {worst}"
    assert load_codec(checkpoint_path(compiled, "best")).codec_id == \
        load_codec(checkpoint_path(eager, "best")).codec_id
