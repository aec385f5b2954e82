"""Evaluate a run through real bitstreams: :func:`evaluate_run` (CLI: :mod:`taskcodecs.evaluate`).

    ds = evaluate_run("runs/recon", split="val", checkpoint="best", limit=None)

A folder of PNG/JPEG files instead of a split: :mod:`taskcodecs.evaluation.images`.

Every image of the split (the first ``limit``) is compressed to bytes with the run's
codec, decoded from those bytes, and measured. The result is ``RUN_DIR/eval.nc`` (or
``out``/eval.nc; netCDF4
through h5netcdf, written to a temporary file and renamed), an xarray Dataset:

==============  ===============  ===========  ============================================
variable        dims             units        meaning
==============  ===============  ===========  ============================================
bpp_actual      image, layer     bits/pixel   bytes x 8 / (H x W) of the *original* image,
                                              container header included, cumulative: the
                                              bytes a decoder needs for this layer and the
                                              ones below (the stream cut after the layer)
bpp_payload     image, layer     bits/pixel   bpp_actual without the container header: the
                                              entropy-coded payloads (each with its flag
                                              byte, 16-bit end check and rANS flush)
bpp_container   image, layer     bits/pixel   the container header (bpp_actual − bpp_payload),
                                              fixed given the image size: no information
bpp_estimated   image, layer     bits/pixel   -log2 likelihoods of the codec's forward pass
                                              (eval mode), cumulative in the same way
bpp_coded_      image, layer     bits/pixel   -log2 likelihoods under the decode-time
estimate                                      (sequential) entropy parameters, the values
                                              the coder codes; equal to bpp_estimated for
                                              checkerboard contexts, not for autoregressive
                                              ones (taskcodecs.coding.entropy)
psnr            image, layer     dB           decoded reconstruction (clamped, rounded to 8
                                              bits) vs the image: base = the base's g_s,
                                              enhancement = the reconstruction target
rmse            image, layer     pixels       disparity RMSE over the image's valid pixels
                                              (depth task, decoded from the base layer)
map             layer            1            box mAP@[.5:.95] (pycocotools), dataset-level
miou            layer            1            mean IoU over the 19 classes, dataset-level
confusion       image, layer,    pixels       per-image pixel counts (rows: target class,
                true_class,                   columns: predicted; ignore pixels left out),
                predicted_class               so that mIoU can be bootstrapped over images
height, width   image            pixels       the original image size
==============  ===============  ===========  ============================================

Layers: ``base`` for base codecs; ``base`` and ``enhancement`` for enhancement codecs (the
``enhancement`` layer carries the secondary target; for ``direct`` runs it is decoded from
the base alone, so its rate equals the base's). Metrics appear only where they apply (NaN
elsewhere in their layer dim). Codec-free reference runs have the single layer
``uncompressed``, no bitstream and no ``bpp_*`` variables (their rate is not zero but
undefined: they see the raw image).

attrs: ``config`` (the run's resolved config, JSON), ``codec_id`` ("none" for references),
``experiment``, ``checkpoint`` (best|last), ``checkpoint_step``, ``split``, ``run_dir``,
``bpp_normalization``; for rate-targeted runs also ``rate_target_bpp``, ``rate_tolerance``,
``rate_weight_final``, ``rate_selected_val_bpp`` and ``rate_on_target``
(:mod:`taskcodecs.training.rate_control`). :func:`summary` is the one line the command line
prints. (Read ``map`` as ``ds["map"]``:
``ds.map`` is the Dataset method.)

Evaluation never creates data: a missing or empty dataset folder is an error that gives the
command regenerating the run's synthetic scenes (:func:`taskcodecs.runs.run_data.existing_data`).
A second evaluation writing the same eval.nc while one runs is refused (a lock file,
:func:`infra.locks.exclusive_lock`). Errors raise a ValueError naming the value or file (on the
command line: one line, exit 2, :mod:`infra.cli`).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from infra.config import ConfigError, config_to_dict
from infra.io import atomic_write, check_writable
from infra.locks import exclusive_lock
from taskcodecs.coding.bitstream import unpack
from taskcodecs.data.errors import DatasetError
from taskcodecs.evaluation.metrics import ConfusionMatrix, MaskedRMSE, coco_map, psnr
from taskcodecs.runs.run_data import build_dataset, collate_for, existing_data, move_to_device
from taskcodecs.runs.run_model import load_run_model
from taskcodecs.training.distributed import resolve_device

UNITS = {"bpp_actual": "bits/pixel", "bpp_estimated": "bits/pixel", "psnr": "dB",
         "bpp_payload": "bits/pixel", "bpp_container": "bits/pixel",
         "bpp_coded_estimate": "bits/pixel",
         "rmse": "pixels", "map": "1", "miou": "1", "height": "pixels", "width": "pixels",
         "confusion": "pixels"}
DESCRIPTIONS = {
    "bpp_actual": "real bitstream bytes x 8 per original pixel, header included, cumulative "
                  "over layers (the stream cut after this layer)",
    "bpp_estimated": "-log2 likelihoods per original pixel (forward pass, eval mode), "
                     "cumulative over layers",
    "bpp_payload": "the layers' entropy-coded payloads (flag byte, rANS stream, end check, "
                   "flush) x 8 per original pixel, cumulative: bpp_actual without the "
                   "container header",
    "bpp_container": "the container header (magic, version, codec fingerprint, size, "
                     "padding, layer records) x 8 per original pixel: a fixed cost given the "
                     "image size, carrying no information about the image",
    "bpp_coded_estimate": "-log2 likelihoods per original pixel under the decode-time "
                          "(sequential) entropy parameters: what the coder codes, before its "
                          "overheads; differs from bpp_estimated for autoregressive contexts "
                          "(the forward pass sees a parallel context)",
    "psnr": "PSNR of the decoded reconstruction (clamped, 8-bit) against the image",
    "rmse": "disparity RMSE in pixels over the image's valid pixels",
    "map": "box mAP@[.5:.95] over the evaluated images (pycocotools)",
    "miou": "mean IoU over the 19 Cityscapes classes present, over the evaluated images",
    "confusion": "per-image confusion counts (rows target class, columns predicted class)",
}


def tasks_of(model: Any, cfg: Any) -> tuple[str | None, str | None]:
    """(base task, secondary target) of a run's model: e.g. ("depth", "segmentation")."""
    if getattr(model, "codec_id", None) is None:  # reference
        return cfg.task, None
    if hasattr(model, "base"):
        return model.base.config.task, model.config.target
    return model.config.task, None


def _to8bit(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


class _Collector:
    """Per-image values by (variable, layer) and the dataset-level accumulators."""

    def __init__(self, layers: list[str]) -> None:
        self.layers = layers
        self.values: dict[tuple[str, str], dict[int, float]] = {}
        self.confusion = {layer: ConfusionMatrix() for layer in layers}
        self.image_confusion: dict[tuple[str, int], ConfusionMatrix] = {}
        self.detections: dict[str, list[dict]] = {layer: [] for layer in layers}

    def put(self, name: str, layer: str, index: int, value: float) -> None:
        self.values.setdefault((name, layer), {})[index] = float(value)

    def confuse(self, layer: str, index: int, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Segmentation: add one image to the dataset-level and its own confusion matrix."""
        self.confusion[layer].update(pred, target)
        self.image_confusion.setdefault((layer, index), ConfusionMatrix()).update(pred, target)

    def confusion_variable(self, n: int) -> np.ndarray | None:
        if not self.image_confusion:
            return None
        size = next(iter(self.image_confusion.values())).num_classes
        array = np.zeros((n, len(self.layers), size, size), dtype=np.int64)
        for (layer, index), matrix in self.image_confusion.items():
            array[index, self.layers.index(layer)] = matrix.matrix.numpy()
        return array

    def image_variable(self, name: str, n: int) -> np.ndarray | None:
        if not any(key[0] == name for key in self.values):
            return None
        array = np.full((n, len(self.layers)), np.nan)
        for (var, layer), by_image in self.values.items():
            if var == name:
                for index, value in by_image.items():
                    array[index, self.layers.index(layer)] = value
        return array


def _measure_depth(col: _Collector, layer: str, i: int, disparity: torch.Tensor, item: Mapping) -> None:
    rmse = MaskedRMSE()
    rmse.update(disparity.cpu().float(), item["disparity"][None], item["disparity_mask"][None])
    col.put("rmse", layer, i, rmse.compute() if rmse.count else math.nan)


def _measure_base_task(col: _Collector, layer: str, i: int, task: str, out: Mapping,
                       item: Mapping) -> None:
    if task == "depth":
        _measure_depth(col, layer, i, out["disparity"], item)
    elif task == "detection":
        det = out["detections"][0]
        col.detections[layer].append({"image_id": item["image_id"], **{
            k: det[k].detach().cpu() for k in ("boxes", "scores", "labels")}})
    elif task == "segmentation":
        col.confuse(layer, i, out["segmentation"]["out"].cpu(), item["labels"][None])


def evaluate_run(
    run_dir: str | Path,
    split: str = "val",
    checkpoint: str = "best",
    limit: int | None = None,
    device: str = "auto",
    write: bool = True,
    out: str | Path | None = None,
    progress: bool | None = None,
) -> xr.Dataset:
    """Evaluate ``run_dir`` (module docstring); returns the Dataset, written to eval.nc in
    ``out`` (default ``run_dir``). ``progress``: a tqdm bar (None: only on a terminal)."""
    run_dir = Path(run_dir)
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: run directory not found")
    target = Path(out if out is not None else run_dir) / "eval.nc"
    if write:
        check_writable(target, folder=False)
    with contextlib.ExitStack() as stack:
        if write:  # one writer of eval.nc at a time; the second one is refused
            target.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(exclusive_lock(target, f"{target}"))
        return _evaluate(run_dir, split, checkpoint, limit, device, write, target, progress)


def _evaluate(run_dir: Path, split: str, checkpoint: str, limit: int | None, device: str,
              write: bool, target_path: Path, progress: bool | None) -> xr.Dataset:
    model, cfg, exp, meta = load_run_model(run_dir, checkpoint)
    model = model.to(resolve_device(device)).eval()
    base_task, target = tasks_of(model, cfg)
    targets = [t for t, used in (("disparity", "depth" in (base_task, target)),
                                 ("labels", "segmentation" in (base_task, target))) if used]
    dataset = build_dataset(cfg, existing_data(cfg), split, train=False, targets=targets)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count < 1:
        raise DatasetError(f"split {split!r} of the run's dataset holds no images")
    coded = model.codec_id is not None
    layers = (["base", "enhancement"] if target else ["base"]) if coded else ["uncompressed"]
    col = _Collector(layers)
    collate = collate_for(cfg.dataset)
    names, sizes = [], []
    for i in tqdm(range(count), desc=f"evaluate {split}", unit="image", dynamic_ncols=True,
                  disable=None if progress is None else not progress):
        raw = dataset[i]
        item = collate([raw])
        flat = _flatten_item(raw, cfg.dataset)
        image = item["image"]
        names.append(str(flat["name"]))
        sizes.append(tuple(image.shape[-2:]))
        pixels = image.shape[-2] * image.shape[-1]
        with torch.no_grad():
            out = model(move_to_device(item, next(model.parameters()).device))
        if not coded:
            _measure_base_task(col, "uncompressed", i, base_task, out, flat)
            continue
        coded = model.compress_latents(image[0]) if hasattr(model, "compress_latents") \
            else None  # the Codec protocol asks for compress only
        data = coded.to_bytes() if coded is not None else model.compress(image[0])
        decoded = model.decompress(data, "all")
        stream = unpack(data, layers=[])
        payload = dict(stream.layer_sizes)
        above_base = sum(n for name, n in payload.items() if name != "base")
        container = (len(data) - sum(payload.values())) * 8.0 / pixels  # the header, per layer
        col.put("bpp_actual", "base", i, (len(data) - above_base) * 8.0 / pixels)
        col.put("bpp_payload", "base", i, payload.get("base", 0) * 8.0 / pixels)
        col.put("bpp_container", "base", i, container)
        col.put("bpp_estimated", "base", i, float(out["bpp"]["base"]))
        if coded is not None:
            col.put("bpp_coded_estimate", "base", i, coded.estimated_bits["base"] / pixels)
        x_base = decoded.get("x_hat_base", decoded["x_hat"])
        col.put("psnr", "base", i, float(psnr(_to8bit(x_base.cpu()), image)[0]))
        _measure_base_task(col, "base", i, base_task, decoded, flat)
        if target:
            col.put("bpp_actual", "enhancement", i, len(data) * 8.0 / pixels)
            col.put("bpp_payload", "enhancement", i, sum(payload.values()) * 8.0 / pixels)
            col.put("bpp_container", "enhancement", i, container)
            col.put("bpp_estimated", "enhancement", i,
                    float(sum(v for v in out["bpp"].values())))
            if coded is not None:
                col.put("bpp_coded_estimate", "enhancement", i,
                        sum(coded.estimated_bits.values()) / pixels)
            if target == "reconstruction":
                col.put("psnr", "enhancement", i, float(psnr(_to8bit(decoded["x_hat"].cpu()), image)[0]))
            else:
                col.confuse("enhancement", i, decoded["labels"].cpu(), flat["labels"][None])
    ds = _dataset(col, names, sizes, dataset)
    ds.attrs.update({
        "config": json.dumps(config_to_dict(cfg), sort_keys=True),
        "codec_id": model.codec_id or "none",
        "experiment": exp.name,
        "checkpoint": checkpoint,
        "checkpoint_step": int(meta.get("step", -1)),
        "split": split,
        "run_dir": str(run_dir),
        "bpp_normalization": "bits per pixel of the original full-resolution H x W image",
    })
    ds.attrs.update(_rate_control_attrs(meta.get("rate_control")))
    if write:
        atomic_write(target_path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
    return ds


def _rate_control_attrs(control: Mapping[str, Any] | None) -> dict[str, Any]:
    """A rate-targeted run's outcome (:mod:`taskcodecs.training.rate_control`) as netCDF attrs:
    ``rate_target_bpp``, ``rate_tolerance``, ``rate_weight_final``, ``rate_selected_val_bpp``
    (the checkpoint's validation estimated rate) and ``rate_on_target`` (1/0)."""
    if not control:
        return {}
    value = control.get("selected_val_bpp")
    return {"rate_target_bpp": float(control["target_bpp"]),
            "rate_tolerance": float(control["tolerance"]),
            "rate_weight_final": float(control["final_rate_weight"]),
            "rate_selected_val_bpp": math.nan if value is None else float(value),
            "rate_on_target": int(bool(control["on_target"]))}


def _flatten_item(raw: Any, kind: str) -> dict[str, Any]:
    """A dataset item as one dict: Cityscapes items already are; COCO (image, target)."""
    if kind == "cityscapes":
        return raw
    image, target = raw
    return {"image": image, "name": str(target["image_id"]), "image_id": target["image_id"]}


def _dataset(col: _Collector, names: list[str], sizes: list[tuple[int, int]], dataset: Any) -> xr.Dataset:
    n = len(names)
    data_vars: dict[str, Any] = {
        "height": ("image", np.array([s[0] for s in sizes], dtype=np.int64)),
        "width": ("image", np.array([s[1] for s in sizes], dtype=np.int64)),
    }
    for name in ("bpp_actual", "bpp_payload", "bpp_container", "bpp_estimated",
                 "bpp_coded_estimate", "psnr", "rmse"):
        array = col.image_variable(name, n)
        if array is not None:
            data_vars[name] = (("image", "layer"), array)
    if any(col.detections.values()):
        data_vars["map"] = ("layer", np.array([
            coco_map(col.detections[layer], dataset.coco_api)["mAP"] if col.detections[layer]
            else np.nan for layer in col.layers]))
    if any(int(c.matrix.sum()) for c in col.confusion.values()):
        data_vars["miou"] = ("layer", np.array([
            c.compute().miou if int(c.matrix.sum()) else np.nan for c in
            (col.confusion[layer] for layer in col.layers)]))
        data_vars["confusion"] = (("image", "layer", "true_class", "predicted_class"),
                                  col.confusion_variable(n))
    ds = xr.Dataset(data_vars, coords={"image": np.array(names, dtype=object),
                                       "layer": np.array(col.layers, dtype=object)})
    for name, variable in ds.data_vars.items():
        variable.attrs["units"] = UNITS[name]
        if name in DESCRIPTIONS:
            variable.attrs["description"] = DESCRIPTIONS[name]
    return ds


def summary(ds: xr.Dataset) -> str:
    """One line: experiment, checkpoint, images, per layer the mean rate and metrics."""
    parts = []
    for layer in ds.layer.values:
        sel = ds.sel(layer=layer)
        bits = []
        if "bpp_actual" in ds:
            bits.append(f"bpp {float(sel.bpp_actual.mean()):.4f} (est. {float(sel.bpp_estimated.mean()):.4f})")
        for name, fmt in (("psnr", "psnr {:.2f} dB"), ("rmse", "rmse {:.3f} px"),
                          ("map", "mAP {:.4f}"), ("miou", "mIoU {:.4f}")):
            if name in ds and not bool(np.isnan(sel[name]).all()):
                bits.append(fmt.format(float(sel[name].mean())))
        parts.append(f"{layer}: " + ", ".join(bits))
    return (f"{ds.attrs['experiment']} [{ds.attrs['checkpoint']} @ step {ds.attrs['checkpoint_step']}, "
            f"{ds.sizes['image']} {ds.attrs['split']} images] " + " | ".join(parts))
