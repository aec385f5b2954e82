"""The enhancement adapter: a trained *scalable* enhancement run + a Cityscapes-layout dataset
-> (ŷ_b, ŷ_e) latent pairs decoded from the real bitstreams, and the entropy-model family the
enhancement codes ŷ_e with (issue 20 item 4: the probe side of the conditional coding gain).

Data flow, per dataset image (sorted order, the first ``limit`` of each split)::

    PNG ─CityscapesDataset(scale)─▶ x [3, H0, W0] ─crop to multiples of m─▶ x [3, H, W]
        ─8-bit round─▶ x8 ─codec.compress─▶ bytes ─codec.decompress─▶ ŷ_b [C_b, h, w]
                                                                      ŷ_e [C_e, h, w]
    (the decoder's values: ``compress_latents(x8).y_hat`` equals them bit for bit, checked
     per image; a mismatch raises)

ŷ_e is what the decoder reconstructs, s + μ' with s the coded integer symbols and μ' the
decode-time means, so it is *not* integer-valued for a context model; the probe family
(:mod:`vinfo.probes.latent`) scores it with the decoder's own computation (the masked
context over the decoded ŷ_e, teacher-forced), which on the codec's own weights gives back
the codec's decode-time estimated bits exactly. The images are cropped as in
:mod:`vinfo.adapter.codec` so no padding is coded; rates are per pixel of the H x W image.

Refused with :class:`vinfo.errors.VinfoInputError` naming the path: a run that is not an
enhancement run in ``scalable`` mode, a missing checkpoint or dataset split.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from taskcodecs.coding.entropy import ConditionalAutoregressiveGaussianModel
from taskcodecs.data.cityscapes import CityscapesDataset
from taskcodecs.data.errors import DatasetError
from taskcodecs.runs.checkpoint import CheckpointError
from taskcodecs.runs.codecs import load_codec
from vinfo.adapter.codec import coding_unit_size
from vinfo.errors import VinfoInputError

__all__ = ["LatentPairs", "entropy_family", "extract_enhancement_pairs", "find_refit"]


def find_refit(scalable_run: str | os.PathLike) -> Path | None:
    """The standalone-refit run beside ``scalable_run`` (same parent folder) whose
    ``init_from`` names it, or None."""
    scalable = Path(scalable_run)
    for config in sorted(scalable.parent.glob("*/config.json")):
        cfg = json.loads(config.read_text())
        if "standalone-refit" in str(cfg.get("experiment", "")) and \
                Path(str(cfg.get("init_from") or "")).name == scalable.name:
            return config.parent
    return None


def entropy_family(N: int, side_channels: int, side_blocks: int,
                   context: str) -> ConditionalAutoregressiveGaussianModel:
    """A fresh member of the enhancement's conditional entropy-model family (untrained)."""
    return ConditionalAutoregressiveGaussianModel(N, side_channels=side_channels,
                                                  num_res_blocks=side_blocks, context=context)


@dataclass
class LatentPairs:
    """Decoded latents of a scalable run: ``zb`` [n, C_b, h, w], ``ye`` [n, C_e, h, w]
    (float32, the decoder's values), the first ``n_fit`` from the fit (train) split.

    ``estimated_bits`` [n]: the codec's decode-time estimate of ŷ_e's bits per image;
    ``payload_bits`` [n]: the enhancement payload's actual size (bits); ``pixels``: H·W.
    ``family``: what :func:`entropy_family` needs (N, side_channels, side_blocks, context);
    ``codec_state``: the run's entropy model's weights (for the codec-weights check);
    ``refit_state``: the standalone-refit's (``refit_run``), where one was given."""

    zb: np.ndarray
    ye: np.ndarray
    names: list[str]
    n_fit: int
    pixels: int
    estimated_bits: np.ndarray
    payload_bits: np.ndarray
    family: dict
    run_dir: str
    codec_id: str
    codec_state: dict = field(default_factory=dict, repr=False)
    refit_state: dict = field(default_factory=dict, repr=False)
    refit_run: str = ""


def _load_scalable(run_dir: Path, checkpoint: str, mode_wanted: str = "scalable"):
    path = run_dir / "checkpoints" / checkpoint
    if not path.with_suffix(".json").is_file():
        raise VinfoInputError(f"run {run_dir}: no {checkpoint} checkpoint ({path}.json)")
    try:
        codec = load_codec(path)
    except CheckpointError as err:
        raise VinfoInputError(f"run {run_dir}: cannot load the {checkpoint} checkpoint: "
                              f"{err}") from err
    mode = getattr(getattr(codec, "config", None), "mode", None)
    if mode != mode_wanted or getattr(codec, "entropy_model", None) is None:
        raise VinfoInputError(f"run {run_dir}: is a {type(codec).__name__} in mode {mode!r}; "
                              f"the enhancement adapter needs a {mode_wanted} enhancement run")
    return codec


def _code(codec, root: Path, split: str, limit: int | None, scale: float,
          out: dict[str, list]) -> int:
    try:
        dataset = CityscapesDataset(root, split, augment=False, scale=scale, targets=())
    except (DatasetError, ValueError) as err:
        raise VinfoInputError(f"dataset {root} (split {split!r}): {err}") from err
    count = len(dataset) if limit is None else min(int(limit), len(dataset))
    multiple = int(codec.padding_multiple)
    for index in range(count):
        item = dataset[index]
        _, _, height, width = coding_unit_size(item, multiple, root, scale)
        x8 = (item["image"][:, :height, :width].clamp(0, 1) * 255).round() / 255
        coded = codec.compress_latents(x8)
        data = coded.to_bytes()
        decoded = codec.decompress(data)
        zb, ye = decoded["y_hat"]["base"], decoded["y_hat"]["enhancement"]
        if not (torch.equal(zb.cpu(), coded.y_hat["base"].cpu())
                and torch.equal(ye.cpu(), coded.y_hat["enhancement"].cpu())):
            raise VinfoInputError(f"run {codec.codec_id}: image {item['name']}: the decoded "
                                  "latents differ from the encoder's (not bit-exact)")
        out["zb"].append(zb[0].cpu().numpy().astype(np.float32))
        out["ye"].append(ye[0].cpu().numpy().astype(np.float32))
        out["names"].append(str(item["name"]))
        out["est"].append(float(coded.estimated_bits["enhancement"]))
        out["payload"].append(8.0 * len(coded.layers["enhancement"]))
        out["pixels"].append(height * width)
    return count


def extract_enhancement_pairs(
    run_dir: str | os.PathLike, dataset_root: str | os.PathLike, *, fit_split: str = "train",
    split: str = "val", fit_limit: int | None = None, limit: int | None = None,
    checkpoint: str = "best", scale: float = 1.0, log: Callable[[str], None] | None = None,
    refit_run: str | os.PathLike | None = None,
) -> LatentPairs:
    """Code the ``fit_split`` images (first) and the ``split`` images with the scalable run
    of ``run_dir`` and return the decoded (ŷ_b, ŷ_e) (module docstring). ``refit_run``: its
    standalone-refit (same transforms), whose entropy model is a member of the null family
    (:mod:`vinfo.latent_gap` starts a null from it too)."""
    run_dir, root = Path(run_dir), Path(dataset_root)
    if not root.is_dir():
        raise VinfoInputError(f"dataset {root}: folder not found")
    codec = _load_scalable(run_dir, checkpoint)
    refit_state: dict = {}
    if refit_run is not None:
        refit = _load_scalable(Path(refit_run), checkpoint, "standalone-refit")
        if refit.base.codec_id != codec.base.codec_id or \
                refit.config.context != codec.config.context:
            raise VinfoInputError(f"run {refit_run}: its base or context differs from "
                                  f"{run_dir}'s; not this scalable run's refit")
        refit_state = {k: v.detach().cpu().clone()
                       for k, v in refit.entropy_model.state_dict().items()}
    start = time.perf_counter()
    out: dict[str, list] = {k: [] for k in ("zb", "ye", "names", "est", "payload", "pixels")}
    n_fit = _code(codec, root, fit_split, fit_limit, scale, out)
    _code(codec, root, split, limit, scale, out)
    if len(set(out["pixels"])) != 1 or len({z.shape for z in out["ye"]}) != 1:
        raise VinfoInputError(f"dataset {root}: images of different sizes; the probe needs one")
    em = codec.entropy_model
    family = {"N": int(em.N), "side_channels": int(em.side_channels),
              "side_blocks": int(codec.config.side_blocks), "context": str(em.context)}
    if log is not None:
        log(f"coded {len(out['names'])} images with {codec.codec_id} in "
            f"{time.perf_counter() - start:.1f} s: ŷ_e {list(out['ye'][0].shape)}")
    return LatentPairs(
        zb=np.stack(out["zb"]), ye=np.stack(out["ye"]), names=out["names"], n_fit=n_fit,
        pixels=int(out["pixels"][0]), estimated_bits=np.asarray(out["est"]),
        payload_bits=np.asarray(out["payload"]), family=family, run_dir=str(run_dir),
        codec_id=str(codec.codec_id),
        codec_state={k: v.detach().cpu().clone() for k, v in em.state_dict().items()},
        refit_state=refit_state, refit_run="" if refit_run is None else str(refit_run))
