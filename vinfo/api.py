"""The predictive V-information estimator's Python API: :func:`estimate` and :func:`write_outputs`.

    import vinfo
    ds = vinfo.estimate(Z, Y, target_kind="gaussian", families=["linear", "mlp-64"], seeds=[0, 1])
    vinfo.api.write_outputs(ds, cfg, "out/")       # vinfo.nc, vinfo.csv, config.yaml, report
Definitions (DESIGN §2; all outputs in bits, internally nats): for each probe family V,
H_V(Y|∅) is the held-out loss of the family's null (its core alone, a learned positional
map included: :mod:`vinfo.probes.families`), H_V(Y|Z) that of the family fed Z, I_V(Z -> Y) =
H_V(Y|∅) - H_V(Y|Z), and the pointwise V-information of a held-out value is
-log2 f_null(y) + log2 f_Z(y) (:mod:`vinfo.stats.pvi`). Units are "bits/pixel" for dense targets
(per pixel of the target resolution, summed over its channels: comparable with a codec's
bits per pixel at that resolution) and "bits/sample" otherwise (summed over D values). For
dense categorical and discretized targets the default families are autoregressive
(``ar-…``, :mod:`vinfo.probes.autoregressive`): their losses are lossless codelengths, and with
the representation's rate R the capped I_V, min(H_V(Y|∅), R + H_V(Y|Z)) - H_V(Y|Z) <= R,
is reported beside I_V.

The pipeline is :mod:`vinfo.pipeline`, the configuration :mod:`vinfo.config`, the result
Dataset's schema :mod:`vinfo.results`.

Outputs of :func:`write_outputs` (and of ``python -m vinfo.estimate --out``, :mod:`vinfo.cli`): ``vinfo.nc`` (h5netcdf), ``vinfo.csv`` (per-family table),
``config.yaml`` (the resolved config) and the report of :func:`vinfo.report.write_report`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from vinfo.config import VinfoConfig, resolve_config
from vinfo.fit.nulls import NullBank
from vinfo.inputs import VinfoInputError, check_inputs, load_array
from vinfo.pipeline import estimate_inputs
from vinfo.probes.targets import KINDS
from vinfo.results import table_csv


def estimate(
    Z: np.ndarray | torch.Tensor | str | Path,
    Y: np.ndarray | torch.Tensor | str | Path,
    target_kind: str | None = None,
    *,
    config: VinfoConfig | None = None,
    representation_bpp: float | None = None,
    representation_bits: np.ndarray | None = None,
    attrs: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    null_bank: NullBank | None = None,
    **overrides: Any,
) -> xr.Dataset:
    """Estimate V-information from representations ``Z`` to targets ``Y`` for a family ladder.

    ``Z``/``Y`` are arrays or paths (.npy/.npz/.nc); ``overrides`` are :class:`VinfoConfig`
    fields (``families=[...]``, ``seeds=[0, 1]``, ``max_steps=...``, ``device="cuda"``).
    The representation's rate: ``representation_bits`` [N] (or one number for every sample),
    its actual bits per sample (a codec's bytes x 8), or ``representation_bpp`` (bits per original-image pixel, with
    ``attrs["image_pixels"]`` per sample); with either, the capped I_V is reported (discrete
    targets). ``attrs`` go to the result's attributes. ``null_bank`` (a
    :class:`vinfo.fit.nulls.NullBank`) shares fitted nulls between estimates on the same targets.
    Returns the result Dataset (schema: :mod:`vinfo.results`); bad inputs raise
    :class:`vinfo.inputs.VinfoInputError`, bad config values ``infra.config.ConfigError``.
    """
    if target_kind is not None and target_kind not in KINDS:
        raise VinfoInputError(f"unknown target kind {target_kind!r}; expected one of "
                              f"{', '.join(KINDS)}")
    cfg = resolve_config(config, target_kind=target_kind, **overrides)
    names = []
    arrays = []
    for value, role, key in ((Z, "representations", cfg.representations_key),
                             (Y, "targets", cfg.targets_key)):
        if isinstance(value, str | Path):
            names.append(f"{role} file {value}")
            arrays.append(load_array(value, key, role))
        else:
            names.append(f"{role} array")
            arrays.append(value.detach().cpu().numpy() if torch.is_tensor(value) else value)
    inputs = check_inputs(arrays[0], arrays[1], cfg.target_kind, ignore_value=cfg.ignore_value,
                          num_classes=cfg.num_classes, z_name=names[0], y_name=names[1])
    extra = dict(attrs or {})
    n = inputs.z.shape[0]
    bits = None
    if representation_bits is not None:
        bits = np.asarray(representation_bits, dtype=np.float64)
        bits = np.full(n, float(bits)) if bits.ndim == 0 else bits.reshape(-1)
        if bits.shape != (n,) or not np.isfinite(bits).all() or (bits < 0).any():
            raise VinfoInputError(f"representation_bits: expected {n} finite rates >= 0 (bits "
                                  f"per sample), got shape {bits.shape}")
        if representation_bpp is None and "image_pixels" in extra:
            representation_bpp = float(bits.mean() / float(extra["image_pixels"]))
    if representation_bpp is not None:
        extra["representation_bpp"] = float(representation_bpp)
        if bits is None and "image_pixels" in extra:
            bits = np.full(n, float(representation_bpp) * float(extra["image_pixels"]))
    return estimate_inputs(inputs, cfg, extra, log, rate_bits=bits, null_bank=null_bank)


def write_outputs(ds: xr.Dataset, cfg: VinfoConfig, out_dir: str | Path) -> dict[str, Path]:
    """Write vinfo.nc, vinfo.csv, config.yaml and the report as one
    set (:func:`infra.io.publish_set`): a reader of ``out_dir`` sees the previous set or
    this one, never a mix, whatever interrupts the write; a second writer is refused."""
    from infra.config import save_config
    from infra.io import atomic_write, atomic_write_text, publish_set

    def write(stage: Path) -> dict[str, Path]:
        paths = {
            "netcdf": atomic_write(stage / "vinfo.nc",
                                   lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf")),
            "csv": atomic_write_text(stage / "vinfo.csv", table_csv(ds)),
            "config": save_config(cfg, stage / "config.yaml"),
        }
        from vinfo.report import write_report

        paths.update(write_report(ds, stage))
        return paths

    return publish_set(out_dir, write, what="vinfo output")
