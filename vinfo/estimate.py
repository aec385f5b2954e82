"""The predictive V-information estimator: Python API and command line.

    python -m vinfo.estimate --representations Z.npy --targets Y.npy --target-kind categorical \\
        [--families linear,mlp-64] [--seeds 0,1,2] [--bootstrap 1000] [--folds K] \\
        [--max-steps 400] --out DIR [key=value ...]
    python -m vinfo.estimate --codec RUN_DIR --dataset DIR \\
        --target {reconstruction,segmentation,depth} [--split val] [--limit N] \\
        [--checkpoint best|last] [--families ...] --out DIR    # Z = a base codec's ŷ_b
    python -m vinfo.estimate        # the embedded default (placeholder inputs, vinfo.data)

    import vinfo
    ds = vinfo.estimate(Z, Y, target_kind="gaussian", families=["linear", "mlp-64"], seeds=[0, 1])

Definitions (DESIGN §2; all outputs in bits, internally nats): for each probe family V,
H_V(Y|∅) is the held-out loss of the family's null (its core alone, a learned positional
map included: :mod:`vinfo.families`), H_V(Y|Z) that of the family fed Z, I_V(Z -> Y) =
H_V(Y|∅) - H_V(Y|Z), and the pointwise V-information of a held-out value is
-log2 f_null(y) + log2 f_Z(y) (:mod:`vinfo.pvi`). Units are "bits/pixel" for dense targets
(per pixel of the target resolution, summed over its channels: comparable with a codec's
bits per pixel at that resolution) and "bits/sample" otherwise (summed over D values). For
dense categorical and discretized targets the default families are autoregressive
(``ar-…``, :mod:`vinfo.autoregressive`): their losses are lossless codelengths, and with
the representation's rate R the capped I_V, min(H_V(Y|∅), R + H_V(Y|Z)) - H_V(Y|Z) <= R,
is reported beside I_V.

The pipeline is :mod:`vinfo.pipeline`, the configuration :mod:`vinfo.config`, the result
Dataset's schema :mod:`vinfo.dataset`.

Outputs in ``--out``: ``vinfo.nc`` (h5netcdf), ``vinfo.csv`` (per-family table),
``config.yaml`` (the resolved config) and the report of :func:`vinfo.report.write_report`.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from taskcodecs.config import ConfigError, apply_overrides, load_config, parse_overrides
from vinfo.config import (  # noqa: F401 - the config API, re-exported
    DEFAULT_RUN,
    DefaultData,
    VinfoConfig,
    check_config,
    fit_settings,
    resolve_config,
)
from vinfo.data import VinfoInputError, check_inputs, default_inputs, load_array
from vinfo.dataset import VINFO_VERSION, table_csv  # noqa: F401
from vinfo.nulls import NullBank
from vinfo.pipeline import estimate_inputs
from vinfo.targets import KINDS


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
    The representation's rate: ``representation_bits`` [N], its actual bits per sample (a
    codec's bytes x 8), or ``representation_bpp`` (bits per original-image pixel, with
    ``attrs["image_pixels"]`` per sample); with either, the capped I_V is reported (discrete
    targets). ``attrs`` go to the result's attributes. ``null_bank`` (a
    :class:`vinfo.nulls.NullBank`) shares fitted nulls between estimates on the same targets.
    Returns the result Dataset (schema: :mod:`vinfo.dataset`); bad inputs raise
    :class:`vinfo.data.VinfoInputError`, bad config values ``taskcodecs.config.ConfigError``.
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
        bits = np.asarray(representation_bits, dtype=np.float64).reshape(-1)
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


def write_outputs(
    ds: xr.Dataset, cfg: VinfoConfig, out_dir: str | Path, log: Callable[[str], None] | None = None
) -> dict[str, Path]:
    """Write vinfo.nc, vinfo.csv, config.yaml and (if vinfo.report exists) the report as one
    set (:func:`taskcodecs.io.publish_set`): a reader of ``out_dir`` sees the previous set or
    this one, never a mix, whatever interrupts the write; a second writer is refused."""
    import importlib.util

    from taskcodecs.config import save_config
    from taskcodecs.io import atomic_write, atomic_write_text, publish_set

    def write(stage: Path) -> dict[str, Path]:
        paths = {
            "netcdf": atomic_write(stage / "vinfo.nc",
                                   lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf")),
            "csv": atomic_write_text(stage / "vinfo.csv", table_csv(ds)),
            "config": save_config(cfg, stage / "config.yaml"),
        }
        if importlib.util.find_spec("vinfo.report") is None:
            if log is not None:
                log("vinfo.report is not available: wrote vinfo.nc and vinfo.csv without a report")
        else:
            from vinfo.report import write_report

            paths.update(write_report(ds, stage))
        return paths

    return publish_set(out_dir, write, what="vinfo output")


# ---------------------------------------------------------------------------- command line


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vinfo.estimate",
        description="Estimate predictive V-information I_V(Z -> Y) in bits for a ladder of probe "
                    "families. Without --representations/--targets: the embedded default "
                    "(synthetic scenes, a placeholder representation).")
    parser.add_argument("--representations", help="Z: .npy/.npz/.nc, [N, D] or [N, C, h, w]")
    parser.add_argument("--targets", help="Y: .npy/.npz/.nc, [N], [N, D] or [N, C, H, W]")
    codec = parser.add_argument_group(
        "codec inputs (instead of --representations/--targets; see vinfo.adapter)")
    codec.add_argument("--codec", metavar="RUN_DIR", help="a base codec training run directory")
    codec.add_argument("--dataset", metavar="DIR", help="Cityscapes-layout dataset root")
    codec.add_argument("--target", choices=["reconstruction", "segmentation", "depth"])
    codec.add_argument("--split", default="val", help="dataset split (default val)")
    codec.add_argument("--limit", type=int, help="only the first N images")
    codec.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--representations-key", help="array name inside a .npz/.nc")
    parser.add_argument("--targets-key", help="array name inside a .npz/.nc")
    parser.add_argument("--target-kind", choices=list(KINDS))
    parser.add_argument("--families", help="comma-separated, e.g. linear,mlp-64,cnn-3x64,synthesis")
    parser.add_argument("--seeds", type=_int_list, help="refit seeds, e.g. 0,1,2")
    parser.add_argument("--seed", type=int, help="split and bootstrap seed (0 is a seed)")
    parser.add_argument("--bootstrap", type=int, help="bootstrap replicates")
    parser.add_argument("--folds", type=int, help="K-fold cross-fitting (1: one split)")
    parser.add_argument("--max-steps", type=int,
                        help="starting optimizer step budget per probe (it doubles while a "
                             "probe still improves, up to step_limit)")
    parser.add_argument("--device", help="probes' device: cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--ignore-value", type=float, help="target value that counts for no model")
    parser.add_argument("--num-classes", type=int, help="categorical: number of classes K")
    parser.add_argument("--config", help="a YAML file of VinfoConfig keys")
    parser.add_argument("--out", help="output directory (default runs/vinfo-default)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. lr=1e-3")
    return parser


def config_from_args(args: argparse.Namespace) -> VinfoConfig:
    """Defaults < --config (or, with neither inputs nor --config, the embedded-default preset)
    < flags < key=value overrides."""
    from_file = load_config(VinfoConfig, args.config) if args.config else VinfoConfig()
    if not (args.representations or args.targets or getattr(args, "codec", None)
            or from_file.representations):
        from_file = apply_overrides(from_file, DEFAULT_RUN) if not args.config else from_file
    flags = {key: getattr(args, key) for key in (
        "representations", "targets", "representations_key", "targets_key", "families", "seeds",
        "seed", "bootstrap", "folds", "max_steps", "num_classes", "ignore_value", "out",
        "device")}
    flags["target_kind"] = args.target_kind
    flags = {k: v for k, v in flags.items() if v is not None}
    if isinstance(flags.get("families"), str):
        flags["families"] = [f.strip() for f in flags["families"].split(",") if f.strip()]
    cfg = apply_overrides(from_file, flags)
    return apply_overrides(cfg, parse_overrides(args.overrides))


def _log(message: str) -> None:
    print(f"[vinfo {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """The command line; errors and interrupts follow :mod:`taskcodecs.cli` (exit 2 / 130)."""
    from taskcodecs import cli

    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    from taskcodecs import cli
    from taskcodecs.io import check_writable, exclusive_lock

    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    if cfg.max_steps < 1:  # 0 would report I_V from untrained probes
        raise ConfigError(f"max_steps (--max-steps) must be >= 1, got {cfg.max_steps}")
    check_writable(cfg.out)  # before any fitting
    cli.on_interrupt(f"nothing was written ({cfg.out} keeps its previous outputs, if any)")
    with exclusive_lock(cfg.out, f"vinfo output folder {cfg.out}"):  # refuse a 2nd writer now
        if args.codec or args.dataset or args.target:
            ds, cfg = _estimate_codec(args, cfg)
        elif bool(cfg.representations) != bool(cfg.targets):
            raise VinfoInputError("give both --representations and --targets, or neither "
                                  "(the embedded default)")
        elif cfg.representations:
            ds = estimate(cfg.representations, cfg.targets, config=cfg, log=_log)
        else:
            d = cfg.default_data
            data_dir = d.data_dir or str(Path(cfg.out) / "synthetic-data")
            _log(f"embedded default: synthetic scenes in {data_dir} (placeholder representation)")
            z, y, source = default_inputs(data_dir, train=d.train, val=d.val, height=d.height,
                                          width=d.width, seed=d.seed)
            cfg = apply_overrides(cfg, {"source": cfg.source or source})
            ds = estimate(z, y, config=cfg, log=_log)
        paths = write_outputs(ds, cfg, cfg.out, _log)
    table = ds[["h_null", "h_cond", "vinfo", "vinfo_low", "vinfo_high"]].to_dataframe()
    print(f"I_V in {ds['vinfo'].attrs['units']}:\n{table.to_string(float_format='%.4f')}")
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0


def _estimate_codec(
    args: argparse.Namespace, cfg: VinfoConfig
) -> tuple[xr.Dataset, VinfoConfig]:
    """``--codec RUN_DIR --dataset DIR --target T``: the estimate on a codec's (ŷ_b, Y) pairs."""
    from vinfo.adapter import extract_codec_pairs

    if cfg.representations or cfg.targets:
        raise VinfoInputError("--codec/--dataset/--target replace --representations/--targets; "
                              "give one or the other")
    missing = [f"--{name}" for name in ("codec", "dataset", "target") if not getattr(args, name)]
    if missing:
        raise VinfoInputError(f"codec inputs need --codec, --dataset and --target; missing "
                              f"{', '.join(missing)}")
    pairs = extract_codec_pairs(args.codec, args.dataset, args.target, split=args.split,
                                limit=args.limit, checkpoint=args.checkpoint,
                                target_kind=args.target_kind, log=_log)
    cfg = apply_overrides(cfg, {"target_kind": pairs.target_kind, "source": pairs.source,
                                "ignore_value": pairs.ignore_value,
                                "num_classes": pairs.num_classes})
    ds = estimate(pairs.Z, pairs.Y, config=cfg, representation_bpp=pairs.representation_bpp,
                  representation_bits=pairs.bytes_per_image * 8.0, attrs=pairs.attrs(),
                  log=_log)
    return ds, cfg


class _CallableModule(types.ModuleType):
    """Lets ``vinfo.estimate(Z, Y, ...)`` call :func:`estimate` while ``vinfo.estimate`` stays
    this module (``python -m vinfo.estimate``, ``from vinfo.estimate import VinfoConfig``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> xr.Dataset:
        return estimate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
