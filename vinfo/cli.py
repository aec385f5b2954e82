"""The command line ``python -m vinfo.estimate`` (:mod:`vinfo.estimate` runs :func:`main`).

    python -m vinfo.estimate --representations Z.npy --targets Y.npy --target-kind categorical \\
        [--families linear,mlp-64] [--seeds 0,1,2] [--bootstrap 1000] [--folds K] \\
        [--max-steps 400] --out DIR [key=value ...]
    python -m vinfo.estimate --codec RUN_DIR --dataset DIR \\
        --target {reconstruction,segmentation,depth} [--split val] [--limit N] \\
        [--checkpoint best|last] [--families ...] --out DIR    # Z = a base codec's ŷ_b
    python -m vinfo.estimate        # the embedded default: a planted code (vinfo.inputs)

Outputs in ``--out``: those of :func:`vinfo.api.write_outputs`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

from infra.config import ConfigError, apply_overrides, load_config, parse_overrides
from vinfo.api import estimate, write_outputs
from vinfo.config import DEFAULT_RUN, VinfoConfig
from vinfo.inputs import VinfoInputError, default_inputs, load_array
from vinfo.probes.targets import KINDS
from vinfo.report.schema import trained_note


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
    codec.add_argument("--target", choices=["reconstruction", "segmentation", "depth"],
                       help="the target Y paired with the decoded base latents")
    codec.add_argument("--split", default="val", help="dataset split (default val)")
    codec.add_argument("--limit", type=int, help="only the first N images")
    codec.add_argument("--checkpoint", choices=["best", "last"], default="best",
                       help="which checkpoint of the codec run (default best)")
    parser.add_argument("--representations-key", help="array name inside a .npz/.nc")
    parser.add_argument("--targets-key", help="array name inside a .npz/.nc")
    parser.add_argument("--target-kind", choices=list(KINDS),
                        help="the likelihood family of the target Y")
    parser.add_argument("--families", help="comma-separated, e.g. linear,mlp-64,cnn-3x64,synthesis")
    parser.add_argument("--seeds", type=_int_list, help="refit seeds, e.g. 0,1,2")
    parser.add_argument("--seed", type=int, help="split and bootstrap seed (0 is a seed)")
    parser.add_argument("--bootstrap", type=int, help="bootstrap replicates")
    parser.add_argument("--folds", type=int, help="K-fold cross-fitting (1: one split)")
    parser.add_argument("--max-steps", type=int,
                        help="starting optimizer step budget per probe (it doubles while a "
                             "probe still improves, up to step_limit)")
    parser.add_argument("--device", help="probes' device: cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--representation-bits", metavar="N|FILE.npy",
                        help="the representation's rate, bits per sample: one number for every "
                             "sample or a .npy of N numbers (gives the capped I_V, the bound "
                             "check and the MDE-vs-rate flag)")
    parser.add_argument("--fit-samples", type=int, metavar="N",
                        help="the probing protocol: the first N samples (the train split) fit "
                             "every probe, the rest select and evaluate")
    codec.add_argument("--fit-split", default="train",
                       help="codec inputs: the split whose images fit the probes (the probing "
                            "protocol; default train; 'none': fit on shares of --split)")
    parser.add_argument("--ignore-value", type=float, help="target value that counts for no model")
    parser.add_argument("--num-classes", type=int, help="categorical: number of classes K")
    parser.add_argument("--config", help="a YAML file of VinfoConfig keys")
    parser.add_argument("--out", help="output directory (default runs/vinfo-default)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="VinfoConfig overrides, e.g. lr=1e-3")
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
        "device", "fit_samples")}
    flags["target_kind"] = args.target_kind
    flags = {k: v for k, v in flags.items() if v is not None}
    if isinstance(flags.get("families"), str):
        flags["families"] = [f.strip() for f in flags["families"].split(",") if f.strip()]
    cfg = apply_overrides(from_file, flags)
    return apply_overrides(cfg, parse_overrides(args.overrides))


def _log(message: str) -> None:
    print(f"[vinfo {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """The command line; errors and interrupts follow :mod:`infra.cli` (exit 2 / 130)."""
    from infra import cli

    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    from infra import cli
    from infra.io import check_writable, exclusive_lock

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
            ds = estimate(cfg.representations, cfg.targets, config=cfg, log=_log,
                          representation_bits=representation_bits(args.representation_bits))
        else:
            d = cfg.default_data
            data_dir = d.data_dir or str(Path(cfg.out) / "synthetic-data")
            _log(f"embedded default: synthetic scenes in {data_dir}, Z = a planted code")
            inputs = default_inputs(data_dir, train=d.train, val=d.val, height=d.height,
                                    width=d.width, seed=d.seed)
            cfg = apply_overrides(cfg, {"source": cfg.source or inputs.source,
                                        "fit_samples": cfg.fit_samples or inputs.fit_samples})
            ds = estimate(inputs.z, inputs.y, config=cfg, log=_log,
                          representation_bits=inputs.rate_bits)
        paths = write_outputs(ds, cfg, cfg.out)
    columns = [c for c in ("h_null", "h_cond", "vinfo", "vinfo_low", "vinfo_high", "vinfo_mde",
                           "vinfo_capped") if c in ds]
    table = ds[columns].to_dataframe()
    print(f"I_V in {ds['vinfo'].attrs['units']}:\n{table.to_string(float_format='%.4f')}")
    for line in summary_lines(ds):
        print(line)
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0


def representation_bits(value: str | None) -> float | np.ndarray | None:
    """``--representation-bits``: a number (bits per sample, every sample) or a .npy file of
    one number per sample; VinfoInputError names the value otherwise."""
    if value is None:
        return None
    try:
        bits = float(value)
    except ValueError:
        if not value.endswith(".npy"):
            raise VinfoInputError(f"--representation-bits {value!r}: expected a number of bits "
                                  "per sample or a .npy file of them") from None
        return load_array(value, role="representation bits")
    if not (np.isfinite(bits) and bits >= 0):
        raise VinfoInputError(f"--representation-bits {value!r}: expected a finite number "
                              ">= 0 of bits per sample")
    return bits


def summary_lines(ds: xr.Dataset) -> list[str]:
    """Plain-language lines under the table: the null against stock codecs, each rung's
    minimum detectable effect against the rate, the flags."""
    unit = ds["vinfo"].attrs["units"]
    lines = []
    if "stock_jpegxl_bpp" in ds:
        stock = ", ".join(f"{name} {float(ds[f'stock_{key}_bpp']):.3f}" for key, name in (
            ("png", "PNG"), ("webp", "WebP"), ("jpegxl", "JPEG-XL")) if f"stock_{key}_bpp" in ds)
        lines.append(f"null H_V(Y|∅) {float(ds['h_null'].values[0]):.3f} {unit}; stock lossless "
                     f"on the same images: {stock} -- {ds.attrs['null_note']}")
    rate = float(ds["rate_per_unit"]) if "rate_per_unit" in ds else None
    for i, family in enumerate(ds["family"].values):
        low, high = float(ds["vinfo_low"].values[i]), float(ds["vinfo_high"].values[i])
        mde = float(ds["vinfo_mde"].values[i])
        verdict = ("detected (interval above 0)" if not bool(ds["collapsed"].values[i]) else
                   f"not detected: cannot see effects smaller than {mde:.4f} {unit}")
        text = f"{family}: I_V {float(ds['vinfo'].values[i]):+.4f} [{low:+.4f}, {high:+.4f}] "
        text += f"{unit}, MDE {mde:.4f}: {verdict}"
        text += trained_note(ds, i)
        if rate is not None:
            if bool(ds["cap_binds"].values[i]):
                text += (f"; ABOVE the rate R = {rate:.4f}: the null, not Z, sets this number "
                         f"(capped: {float(ds['vinfo_capped'].values[i]):.4f})")
            if bool(ds["mde_exceeds_rate"].values[i]):
                text += f"; MDE above R = {rate:.4f}"
        if bool(ds["unconverged"].values[i]):
            text += "; NOT CONVERGED (still improving by more than the MDE at the step limit)"
        lines.append(text)
    return lines


def _estimate_codec(
    args: argparse.Namespace, cfg: VinfoConfig
) -> tuple[xr.Dataset, VinfoConfig]:
    """``--codec RUN_DIR --dataset DIR --target T``: the estimate on a codec's (ŷ_b, Y) pairs."""
    from vinfo.adapter.codec import extract_codec_pairs

    if cfg.representations or cfg.targets:
        raise VinfoInputError("--codec/--dataset/--target replace --representations/--targets; "
                              "give one or the other")
    missing = [f"--{name}" for name in ("codec", "dataset", "target") if not getattr(args, name)]
    if missing:
        raise VinfoInputError(f"codec inputs need --codec, --dataset and --target; missing "
                              f"{', '.join(missing)}")
    pairs = extract_codec_pairs(args.codec, args.dataset, args.target, split=args.split,
                                limit=args.limit, checkpoint=args.checkpoint,
                                target_kind=args.target_kind, log=_log,
                                fit_split=None if args.fit_split == "none" else args.fit_split)
    cfg = apply_overrides(cfg, {"target_kind": pairs.target_kind, "source": pairs.source,
                                "ignore_value": pairs.ignore_value,
                                "num_classes": pairs.num_classes,
                                "fit_samples": cfg.fit_samples or pairs.fit_samples})
    ds = estimate(pairs.Z, pairs.Y, config=cfg, representation_bpp=pairs.representation_bpp,
                  representation_bits=pairs.representation_bits, attrs=pairs.attrs(),
                  log=_log)
    return ds, cfg
