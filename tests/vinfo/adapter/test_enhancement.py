"""The enhancement adapter on a tiny trained scalable run: (ŷ_b, ŷ_e) decoded from the real
bitstreams, and the probe family on the codec's own weights giving back the codec's bits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taskcodecs.data.cityscapes import CityscapesDataset
from taskcodecs.data.synthetic import generate_dataset
from taskcodecs.runs.codecs import load_codec
from taskcodecs.training.run import resolve_config, train
from vinfo.adapter.enhancement import extract_enhancement_pairs, find_refit
from vinfo.errors import VinfoInputError
from vinfo.fit.latent import LatentFitSettings, score_bits
from vinfo.latent_gap import estimate_latent_gap
from vinfo.probes.latent import LatentProbe


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("enhancement")
    small = {"synthetic.train": 4, "synthetic.val": 3, "max_steps": 2, "val_every": 2,
             "num_workers": 0, "synthetic_cache": str(root / "cache")}
    base = train(resolve_config("tiny-depth-base-proposed", {**small, "out": str(root / "b")}))
    scalable = train(resolve_config("tiny-cityscapes-reconstruction-scalable",
                                    {**small, "out": str(root / "s"), "base": str(base)}))
    refit = train(resolve_config("tiny-cityscapes-reconstruction-standalone-refit",
                                 {**small, "out": str(root / "r"), "base": str(base),
                                  "init_from": str(scalable)}))
    data = root / "scenes"  # 70x100: cropped to the 16-pixel coding unit, 64x96
    generate_dataset(data, train=6, val=6, height=70, width=100, seed=3, workers=1)
    return {"base": base, "scalable": scalable, "refit": refit, "data": data}


def test_latents_are_the_decoders_and_the_codec_member_scores_its_bits(setup):
    pairs = extract_enhancement_pairs(setup["scalable"], setup["data"], fit_limit=4, limit=3)
    codec = load_codec(setup["scalable"] / "checkpoints" / "best")
    assert pairs.n_fit == 4 and pairs.ye.shape[0] == pairs.zb.shape[0] == 7
    assert pairs.pixels == 64 * 96 and pairs.codec_id == codec.codec_id
    em = codec.entropy_model
    assert pairs.family == {"N": em.N, "side_channels": em.side_channels,
                            "side_blocks": codec.config.side_blocks, "context": em.context}
    val = CityscapesDataset(setup["data"], "val", targets=())
    for i in range(3):
        image = (val[i]["image"][:, :64, :96] * 255).round() / 255
        decoded = codec.decompress(codec.compress(image))
        assert np.array_equal(pairs.ye[4 + i], decoded["y_hat"]["enhancement"][0].numpy())
        assert np.array_equal(pairs.zb[4 + i], decoded["y_hat"]["base"][0].numpy())
        coded = codec.compress_latents(image)
        assert pairs.estimated_bits[4 + i] == pytest.approx(coded.estimated_bits["enhancement"])
        assert pairs.payload_bits[4 + i] == 8 * len(coded.layers["enhancement"])
    # the probe family on the codec's weights is the codec's decode-time estimate
    member = LatentProbe(**pairs.family, conditional=True, size=pairs.ye.shape[-2:])
    member.load_codec_state(pairs.codec_state)
    bits = score_bits(member, torch.from_numpy(pairs.ye), torch.from_numpy(pairs.zb))
    # (float32 probe vs the coder's float64 likelihoods: within 1e-3 bits per image)
    assert np.allclose(bits, pairs.estimated_bits, rtol=1e-5, atol=1e-3)
    assert pairs.estimated_bits.max() > 1.0  # not a trivially empty latent
    # a deeper rung nested on the codec's member starts as that member (extra blocks identity)
    deeper = LatentProbe(**{**pairs.family, "side_blocks": pairs.family["side_blocks"] + 2},
                         conditional=True, size=pairs.ye.shape[-2:])
    deeper.start_from_codec(pairs.codec_state, pairs.family["side_blocks"])
    deeper_bits = score_bits(deeper, torch.from_numpy(pairs.ye), torch.from_numpy(pairs.zb))
    assert np.allclose(deeper_bits, bits, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="cannot hold the codec's 5"):
        deeper.start_from_codec(pairs.codec_state, 5)


def test_the_refit_is_found_and_its_member_is_a_null_candidate(setup):
    assert find_refit(setup["scalable"]) == setup["refit"]
    assert find_refit(setup["refit"]) is None
    pairs = extract_enhancement_pairs(setup["scalable"], setup["data"], fit_limit=2, limit=1,
                                      refit_run=setup["refit"])
    refit = load_codec(setup["refit"] / "checkpoints" / "best")
    state = refit.entropy_model.state_dict()
    assert pairs.refit_run == str(setup["refit"]) and set(pairs.refit_state) == set(state)
    assert all(torch.equal(pairs.refit_state[k], state[k].cpu()) for k in state)
    with pytest.raises(VinfoInputError, match="needs a standalone-refit enhancement run"):
        extract_enhancement_pairs(setup["scalable"], setup["data"], refit_run=setup["scalable"])


def test_the_ladder_runs_on_a_tiny_run(setup):
    pairs = extract_enhancement_pairs(setup["scalable"], setup["data"], limit=6,
                                      refit_run=setup["refit"])
    ds = estimate_latent_gap(pairs, seeds=(0,), larger_rungs=(2,), n_boot=50,
                             settings=LatentFitSettings(max_steps=5, step_limit=10,
                                                        eval_every=5, patience=1))
    assert ds.sizes["rung"] == 2 and ds.sizes["image"] == 4  # 6 val: 2 select, 4 evaluated
    assert float(ds["codec_bpp"]) == pytest.approx(float(ds["codec_estimated_bpp"]), rel=1e-5,
                                                   abs=1e-3 / pairs.pixels)
    assert ds.attrs["init"] == "codec" and ds.attrs["n_fit"] == 6
    assert ds.attrs["refit_run"] == str(setup["refit"])
    assert np.isfinite(float(ds["refit_member_bpp"])) and ds.sizes["seed"] == 1


def test_refuses_a_base_run_and_a_missing_dataset(setup, tmp_path):
    with pytest.raises(VinfoInputError, match="needs a scalable enhancement run"):
        extract_enhancement_pairs(setup["base"], setup["data"])
    with pytest.raises(VinfoInputError, match=f"dataset {tmp_path / 'nope'}: folder not found"):
        extract_enhancement_pairs(setup["scalable"], tmp_path / "nope")
