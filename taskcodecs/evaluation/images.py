"""Evaluate a run's codec on a folder of images (Kodak, CLIC, your own), like
``compressai.utils.eval_model``: ``python -m taskcodecs.evaluate RUN_DIR --images DIR``.

    python -m taskcodecs.evaluate runs/depth --images kodak/ [--json kodak.json] [--out DIR]

Every ``*.png``, ``*.jpg`` and ``*.jpeg`` directly in DIR (sorted by name; sub-folders are
not searched) is compressed to bytes with the run's codec (a real layered bitstream, the
same one ``python -m taskcodecs.codec encode`` writes), decoded from those bytes, and
measured against the original 8-bit image:

=================  ===========  =============================================================
metric             units        meaning
=================  ===========  =============================================================
bpp                bits/pixel   bytes of the bitstream x 8 / (H x W of the original image),
                                header included; per layer cumulative (the stream cut
                                after the layer)
psnr-rgb           dB           PSNR of the decoded reconstruction (clamped, rounded to 8
                                bits) over the three RGB channels, data range 255
ms-ssim-rgb        1            ``pytorch_msssim.ms_ssim`` (5 scales, 11-px window, data
                                range 255) on the same 8-bit images; NaN (JSON null) when
                                the smaller image side is <= 160 px, which 5 scales need
encoding_time      seconds      wall-clock time of ``model.compress`` (image -> bytes)
decoding_time      seconds      wall-clock time of ``model.decompress(bytes, "all")``
=================  ===========  =============================================================

Reconstructions: ``base`` is the base's g_s decoded from the base layer; ``enhancement`` (a
reconstruction enhancement) is g_e's from all layers. Enhancements with another target
(segmentation) have no picture on their top layer: only its rate is reported.

Inputs: any size (the codec pads to its multiple -- 16, 32, 64 or 128 px -- by replication
and crops its outputs back, so bpp and metrics are per pixel of the original H x W). 8-bit
grayscale, palette, RGBA/LA and CMYK inputs are converted to RGB (grayscale replicated,
alpha dropped) and each conversion is logged and listed (``converted_from`` in eval.nc,
``converted`` in the JSON); images of more than 8 bits per channel are refused with an error
naming the file (no scaling is guessed). A folder without PNG/JPEG files is an error.

Outputs, in ``--out`` (default ``RUN_DIR/eval-images/<DIR name>``):

* ``eval.nc`` -- an xarray Dataset (netCDF4 through h5netcdf), dims ``image`` (file names)
  and ``layer``: ``bpp_actual``, ``psnr``, ``ms_ssim`` (image, layer), ``encoding_time``,
  ``decoding_time``, ``height``, ``width``, ``converted_from`` (image), the units in each
  variable's attrs; attrs ``codec_id``, ``experiment``, ``checkpoint``, ``images``, ...
* ``--json FILE`` (default ``<out>/results.json``) -- the layout of
  ``compressai.utils.eval_model``: ``{"name", "description", "results": {metric: [mean]}}``
  with the means over images of the top layer (``bpp``, ``psnr-rgb``, ``ms-ssim-rgb``,
  ``encoding_time``, ``decoding_time``; for layered codecs also ``bpp-base``,
  ``psnr-rgb-base``, ``ms-ssim-rgb-base``), so ``compressai.utils.plot`` reads it; plus
  ``"images"``: one entry per file with the same metrics per image, and the units.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_msssim
import torch
import xarray as xr
from tqdm import tqdm

from infra.config import ConfigError
from infra.io import atomic_write, check_writable, write_json
from taskcodecs.coding.bitstream import unpack
from taskcodecs.data.errors import DatasetError
from taskcodecs.data.transforms import open_rgb_image, rgb_to_tensor
from taskcodecs.runs.run_model import load_run_model
from taskcodecs.training.distributed import resolve_device

__all__ = ["IMAGE_SUFFIXES", "ImageResult", "evaluate_images", "find_images", "ms_ssim_8bit",
           "psnr_8bit", "results_json"]

log = logging.getLogger("taskcodecs.evaluate")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MS_SSIM_MIN_SIDE = 161  # pytorch_msssim: smaller side > (win_size - 1) * 2**4 = 160
_CONVERSIONS = {"L": "grayscale (L): replicated to RGB", "LA": "grayscale+alpha (LA): "
                "replicated to RGB, alpha dropped", "RGBA": "RGBA: alpha dropped",
                "P": "palette (P): expanded to RGB", "PA": "palette+alpha (PA): expanded to "
                "RGB, alpha dropped", "CMYK": "CMYK: converted to RGB", "1": "1-bit: "
                "replicated to RGB", "YCbCr": "YCbCr: converted to RGB"}
UNITS = {"bpp_actual": "bits/pixel", "psnr": "dB", "ms_ssim": "1", "encoding_time": "s",
         "decoding_time": "s", "height": "pixels", "width": "pixels", "converted_from": ""}


@dataclass
class ImageResult:
    """One image's measurements; per-layer dicts keyed by layer name (units: module doc)."""

    name: str
    height: int
    width: int
    converted_from: str  # "" for an RGB input, else the PIL mode it was converted from
    bpp: dict[str, float] = field(default_factory=dict)
    psnr: dict[str, float] = field(default_factory=dict)
    ms_ssim: dict[str, float] = field(default_factory=dict)
    encoding_time: float = math.nan
    decoding_time: float = math.nan


def find_images(folder: str | Path) -> list[Path]:
    """The PNG/JPEG files directly in ``folder``, sorted by name (an error if none)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: image folder not found")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{folder}: no PNG or JPEG image ({', '.join(IMAGE_SUFFIXES)}) in "
                           "this folder (sub-folders are not searched)")
    return files


def _to_255(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> clamped, rounded 8-bit values as float64 in [0, 255]."""
    return (x.detach().double().clamp(0, 1) * 255).round()


def psnr_8bit(reconstruction: torch.Tensor, original: torch.Tensor) -> float:
    """PSNR in dB of two (1, 3, H, W) images in [0, 1], both rounded to 8 bits first;
    identical images give inf."""
    mse = float(((_to_255(reconstruction) - _to_255(original)) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ms_ssim_8bit(reconstruction: torch.Tensor, original: torch.Tensor) -> float:
    """``pytorch_msssim.ms_ssim`` of the 8-bit images (data range 255); NaN when the smaller
    side is below 161 px (5 scales of an 11-px window do not fit)."""
    if min(original.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return math.nan
    value = pytorch_msssim.ms_ssim(_to_255(original).float(), _to_255(reconstruction).float(),
                                   data_range=255.0, size_average=True)
    return float(value)


def _layers(model: Any) -> tuple[list[str], str | None]:
    """(layer names, the enhancement's target or None)."""
    if hasattr(model, "base") and hasattr(model.config, "target"):
        return ["base", "enhancement"], model.config.target
    return ["base"], None


def _measure(model: Any, path: Path, layers: list[str], target: str | None,
             device: torch.device) -> ImageResult:
    pil = open_rgb_image(path, "image")
    mode = "" if pil.mode == "RGB" else pil.mode
    if mode:
        log.info("%s: %s", path, _CONVERSIONS.get(mode, f"PIL mode {mode}: converted to RGB"))
    image = rgb_to_tensor(pil)[None]  # (1, 3, H, W) in [0, 1]
    height, width = image.shape[-2:]
    pixels = height * width
    result = ImageResult(path.name, int(height), int(width), mode)
    with torch.no_grad():
        start = time.perf_counter()
        data = model.compress(image.to(device))
        result.encoding_time = time.perf_counter() - start
        start = time.perf_counter()
        decoded = model.decompress(data, "all")
        result.decoding_time = time.perf_counter() - start
    sizes = unpack(data, layers=[]).layer_sizes
    above_base = sum(n for name, n in sizes.items() if name != "base")
    result.bpp["base"] = (len(data) - above_base) * 8.0 / pixels
    base_picture = decoded.get("x_hat_base", decoded["x_hat"]).cpu()
    result.psnr["base"] = psnr_8bit(base_picture, image)
    result.ms_ssim["base"] = ms_ssim_8bit(base_picture, image)
    if len(layers) > 1:
        result.bpp["enhancement"] = len(data) * 8.0 / pixels
        if target == "reconstruction":
            result.psnr["enhancement"] = psnr_8bit(decoded["x_hat"].cpu(), image)
            result.ms_ssim["enhancement"] = ms_ssim_8bit(decoded["x_hat"].cpu(), image)
    return result


def evaluate_images(
    run_dir: str | Path,
    images: str | Path,
    out: str | Path | None = None,
    json_path: str | Path | None = None,
    checkpoint: str = "best",
    limit: int | None = None,
    device: str = "auto",
    progress: bool | None = None,
) -> tuple[xr.Dataset, dict[str, Any]]:
    """Evaluate ``run_dir``'s codec on the images of folder ``images`` (module docstring).

    Writes ``out/eval.nc`` and the JSON (``json_path``, default ``out/results.json``);
    returns (the Dataset, the JSON object). ``progress``: tqdm's ``disable`` rule (None: a
    bar only on a terminal)."""
    run_dir, images = Path(run_dir), Path(images)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: run directory not found")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    files = find_images(images)[:limit]
    out = Path(out) if out is not None else run_dir / "eval-images" / images.resolve().name
    json_path = Path(json_path) if json_path is not None else out / "results.json"
    check_writable(out)
    check_writable(json_path, folder=False)
    model, cfg, exp, meta = load_run_model(run_dir, checkpoint)
    if getattr(model, "codec_id", None) is None:
        raise ConfigError(f"{run_dir}: run {exp.name} is a codec-free reference (no bitstream); "
                          "--images evaluates codec runs")
    dev = resolve_device(device)
    model = model.to(dev).eval()
    layers, target = _layers(model)
    results = []
    bar = tqdm(files, desc=f"evaluate {images.name}", unit="image", dynamic_ncols=True,
               disable=None if progress is None else not progress)
    for path in bar:
        results.append(_measure(model, path, layers, target, dev))
        bar.set_postfix(bpp=f"{results[-1].bpp[layers[-1]]:.3f}")
    bar.close()
    converted = [r for r in results if r.converted_from]
    if converted:
        log.info("%d of %d images converted to RGB: %s", len(converted), len(results),
                 ", ".join(f"{r.name} ({r.converted_from})" for r in converted))
    ds = _dataset(results, layers)
    ds.attrs.update({
        "codec_id": model.codec_id, "experiment": exp.name, "checkpoint": checkpoint,
        "checkpoint_step": int(meta.get("step", -1)), "run_dir": str(run_dir),
        "images": str(images), "bpp_normalization": "bits per pixel of the original H x W image",
        "ms_ssim": "pytorch_msssim.ms_ssim, data range 255, NaN when min(H, W) <= 160",
    })
    obj = results_json(results, layers, name=exp.name, description=(
        f"Inference (real bitstream, {model.codec_id}, {checkpoint} checkpoint @ step "
        f"{ds.attrs['checkpoint_step']}, {len(results)} images of {images})"))
    atomic_write(out / "eval.nc", lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
    write_json(json_path, obj)
    return ds, obj


def _dataset(results: list[ImageResult], layers: list[str]) -> xr.Dataset:
    def per_layer(attribute: str) -> np.ndarray:
        return np.array([[getattr(r, attribute).get(layer, math.nan) for layer in layers]
                         for r in results], dtype=np.float64)

    data_vars: dict[str, Any] = {
        "bpp_actual": (("image", "layer"), per_layer("bpp")),
        "psnr": (("image", "layer"), per_layer("psnr")),
        "ms_ssim": (("image", "layer"), per_layer("ms_ssim")),
        "encoding_time": ("image", np.array([r.encoding_time for r in results])),
        "decoding_time": ("image", np.array([r.decoding_time for r in results])),
        "height": ("image", np.array([r.height for r in results], dtype=np.int64)),
        "width": ("image", np.array([r.width for r in results], dtype=np.int64)),
        "converted_from": ("image", np.array([r.converted_from for r in results], dtype=object)),
    }
    ds = xr.Dataset(data_vars, coords={"image": np.array([r.name for r in results], dtype=object),
                                       "layer": np.array(layers, dtype=object)})
    for name, variable in ds.data_vars.items():
        variable.attrs["units"] = UNITS[name]
    return ds


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _mean(values: list[float]) -> float | None:
    """Mean over the finite values (None if there is none): MS-SSIM is NaN on small images."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def results_json(results: list[ImageResult], layers: list[str], name: str,
                 description: str) -> dict[str, Any]:
    """The ``compressai.utils.eval_model`` layout (module docstring); NaN/inf become null."""
    top = layers[-1]

    def metrics(r: ImageResult) -> dict[str, float | None]:
        row = {"bpp": r.bpp[top], "psnr-rgb": r.psnr.get(top, math.nan),
               "ms-ssim-rgb": r.ms_ssim.get(top, math.nan),
               "encoding_time": r.encoding_time, "decoding_time": r.decoding_time}
        if len(layers) > 1:
            row.update({"bpp-base": r.bpp["base"], "psnr-rgb-base": r.psnr["base"],
                        "ms-ssim-rgb-base": r.ms_ssim["base"]})
        return row

    rows = [metrics(r) for r in results]
    keys = list(rows[0])
    return {
        "name": name,
        "description": description,
        "results": {key: [_mean([row[key] for row in rows])] for key in keys},
        "units": {"bpp": "bits per pixel of the original image (real bitstream, header "
                         "included)", "psnr-rgb": "dB (8-bit, data range 255)",
                  "ms-ssim-rgb": "1 (pytorch_msssim; null when min(H, W) <= 160 px)",
                  "encoding_time": "s", "decoding_time": "s"},
        "images": [{"name": r.name, "height": r.height, "width": r.width,
                    "converted": r.converted_from or None,
                    **{k: _finite(v) for k, v in row.items()}}
                   for r, row in zip(results, rows)],
    }


def summary(ds: xr.Dataset, obj: dict[str, Any]) -> str:
    """One line: experiment, images, the mean top-layer metrics."""
    res = obj["results"]

    def fmt(key: str, spec: str) -> str:
        value = res[key][0]
        return "n/a" if value is None else format(value, spec)

    return (f"{ds.attrs['experiment']} [{ds.attrs['checkpoint']} @ step "
            f"{ds.attrs['checkpoint_step']}, {ds.sizes['image']} images of {ds.attrs['images']}] "
            f"bpp {fmt('bpp', '.4f')}, psnr {fmt('psnr-rgb', '.2f')} dB, ms-ssim "
            f"{fmt('ms-ssim-rgb', '.4f')}, encode {fmt('encoding_time', '.3f')} s, decode "
            f"{fmt('decoding_time', '.3f')} s")
