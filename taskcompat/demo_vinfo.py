"""The demo's V-information stages (:mod:`taskcompat.demo`, stage 5), each one cached: the
ladders I_V(Ŷ_b → Y) of both bases over one shared null, and the gap's probe side
I_V(Ŷ_b → Ŷ_e) beside the operational coding gain (issue 20 item 4).

    nc, reused = run_vinfo(out, s, root, "proposed", base_run, "reconstruction")
    dirs = vinfo_stage(out, s, root, bases)     # every (base, target) ladder -> OUT/vinfo/
    paths = gap_probe_stage(out, s, root, enh)  # I_V(Ŷ_b → Ŷ_e) beside the coding gain

The V-information inputs come from the codec adapter (:mod:`vinfo.adapter.codec`): Z = the base
latent Ŷ_b of each image as *decoded from its real bitstream* ([N, C, h, w]); Y = the image as
8-bit integers ([N, 3, H, W], ``discretized`` likelihood: bits per pixel, 3 sub-pixels summed,
directly comparable with a codec's bpp) or the Cityscapes train ids ([N, H, W],
``categorical``, 19 = ignore). A vinfo estimate is reused when its ``vinfo.nc`` was made
from the same base checkpoint (SHA-256 of its weights file) with the same settings.

The gap, probe side: right after the ladders, :func:`gap_probe_stage` fits the Ŷ_e probes of
:mod:`vinfo.latent_gap` (the enhancement's own entropy-model family and a deeper side branch,
null and conditional, to convergence, 2 refit seeds) on the decoded latents of the middle
reconstruction point of each base; the report sets the probe's I_V(Ŷ_b → Ŷ_e) beside the
operational gain refit − scalable (:mod:`analysis.gap_probe`).

This module is the one place in the demo that imports :mod:`vinfo`; it does so inside
:func:`run_vinfo`, :func:`vinfo_stage` and :func:`run_gap_probe` only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from taskcodecs.runs.links import checkpoint_path
from taskcodecs.sweeps.sweep import Point
from taskcompat.demo_steps import DemoSettings

log = logging.getLogger("taskcompat.demo")
detail = logging.getLogger("taskcompat.demo.detail")  # per-probe lines, shown with --verbose


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_vinfo(out: Path, s: DemoSettings, root: Path, label: str, base_run: str,
              target: str, null_bank: Any = None) -> tuple[Path, bool]:
    """I_V(Ŷ_b -> target) for the probe ladder -> OUT/vinfo/LABEL/TARGET/ (vinfo.nc, vinfo.csv,
    config.yaml, report). Returns (vinfo.nc path, reused?). The probing protocol: every train
    image (through the base's real bitstream) fits the probes, the val images select and
    evaluate. ``null_bank`` (a ``vinfo.fit.nulls.NullBank``) lets the bases share the null: both
    are estimated on the same target images, and a null never sees Ŷ_b (one shared
    autoregressive null per target set)."""
    import xarray as xr

    from vinfo.adapter.codec import extract_codec_pairs
    from vinfo.api import estimate, write_outputs
    from vinfo.config import resolve_config

    folder = out / "vinfo" / label / target
    weights = checkpoint_path(base_run, "best").with_suffix(".safetensors")
    stamp = {"base_checkpoint_sha256": file_sha256(weights),
             "demo_settings": json.dumps(s.as_dict(), sort_keys=True)}
    nc = folder / "vinfo.nc"
    if nc.is_file():
        with xr.open_dataset(nc, engine="h5netcdf") as ds:
            if all(ds.attrs.get(k) == v for k, v in stamp.items()):
                return nc, True
    pairs = extract_codec_pairs(base_run, root, target, split="val", log=detail.info,
                                fit_split="train")  # the probing protocol (DESIGN §7)
    cfg = resolve_config(target_kind=pairs.target_kind, families=list(s.vinfo_families),
                         fit_samples=pairs.fit_samples, null_steps=s.vinfo_null_steps,
                         null_warmup_steps=s.vinfo_null_warmup,
                         null_eval_every=s.vinfo_null_eval_every,
                         seeds=list(s.vinfo_seeds), seed=s.seed, max_steps=s.vinfo_steps,
                         eval_every=s.vinfo_eval_every, patience=s.vinfo_patience,
                         batch_size=s.vinfo_batch_size, lr=s.vinfo_lr,
                         bootstrap=s.vinfo_bootstrap, curves=False, out=str(folder),
                         source=pairs.source, ignore_value=pairs.ignore_value,
                         num_classes=pairs.num_classes)
    ds = estimate(pairs.Z, pairs.Y, config=cfg, representation_bpp=pairs.representation_bpp,
                  representation_bits=pairs.representation_bits,
                  attrs={**pairs.attrs(), **stamp, "base_label": label, "target": target},
                  log=detail.info, null_bank=null_bank)
    write_outputs(ds, cfg, folder)
    return nc, False


def vinfo_stage(out: Path, s: DemoSettings, root: Path, bases: dict[str, str]) -> dict[str, Path]:
    """Every (base, target) ladder on the bases of the first training seed (both at the
    matched base rate); returns {label: OUT/vinfo/LABEL} for the analysis report."""
    from vinfo.fit.nulls import NullBank

    jobs = [(label, run, target) for target in s.vinfo_targets for label, run in bases.items()]
    bar = tqdm(jobs, desc="vinfo ladders", unit="ladder", disable=None, dynamic_ncols=True)
    bank = NullBank()  # the bases share the null (it never sees Ŷ_b)
    for i, (label, run, target) in enumerate(bar, 1):
        bar.set_postfix_str(f"{label} -> {target}")
        start = time.perf_counter()
        nc, reused = run_vinfo(out, s, root, label, run, target, bank)
        log.info("vinfo %d/%d: I_V(Y_b -> %s), %s base: %s %s (%.1f s)", i, len(jobs), target,
                 label, nc, "reused" if reused else "estimated", time.perf_counter() - start)
    return {label: out / "vinfo" / label for label in bases}


GAP_PROBE_SEEDS = (0, 1)  # the Ŷ_e probes' refit seeds (the smoke test: one)


def gap_probe_point(points: list[Point], s: DemoSettings) -> dict[str, str]:
    """{base label: scalable run dir} at the middle reconstruction rate target (the one
    point per base whose probe-side gap the demo measures; each costs ~1-2 min)."""
    targets = sorted(s.recon_rate_targets)
    middle = targets[(len(targets) - 1) // 2] if len(targets) > 2 else targets[-1]
    return {p.base_label: p.run_dir for p in points
            if p.method == "scalable" and p.rate_target == middle and p.base_label}


def run_gap_probe(out: Path, s: DemoSettings, root: Path, label: str,
                  scalable_run: str) -> tuple[Path, bool]:
    """I_V(Ŷ_b -> Ŷ_e) of one scalable point (issue 20 item 4, :mod:`vinfo.latent_gap`) ->
    OUT/vinfo/LABEL/latent_gap/RUN/latent_gap.nc, where the report's gap section finds it
    (:mod:`analysis.gap_probe`). Reused when stamped with the same scalable checkpoint
    (SHA-256 of its weights) and probe settings. Returns (path, reused?)."""
    import xarray as xr

    from vinfo.adapter.enhancement import extract_enhancement_pairs, find_refit
    from vinfo.fit.latent import LatentFitSettings
    from vinfo.latent_gap import estimate_latent_gap, write_latent_gap

    quick = s.smoke_test
    settings = (LatentFitSettings(max_steps=10, step_limit=20, eval_every=5, patience=1)
                if quick else LatentFitSettings())
    seeds = GAP_PROBE_SEEDS[:1] if quick else GAP_PROBE_SEEDS
    path = out / "vinfo" / label / "latent_gap" / Path(scalable_run).name / "latent_gap.nc"
    weights = checkpoint_path(scalable_run, "best").with_suffix(".safetensors")
    refit = find_refit(scalable_run)  # its entropy model is a null candidate too
    refit_weights = None if refit is None else checkpoint_path(refit, "best").with_suffix(
        ".safetensors")
    stamp = {"scalable_checkpoint_sha256": file_sha256(weights),
             "refit_checkpoint_sha256": "" if refit_weights is None else
             file_sha256(refit_weights),
             "probe_settings": f"{settings!r} seeds={list(seeds)} data={root}"}
    if path.is_file():
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            if all(ds.attrs.get(k) == v for k, v in stamp.items()):
                return path, True
    pairs = extract_enhancement_pairs(scalable_run, root, log=detail.info, refit_run=refit)
    ds = estimate_latent_gap(pairs, seeds=seeds, settings=settings, log=detail.info,
                             n_boot=s.vinfo_bootstrap)
    ds.attrs.update({**stamp, "base_label": label})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_latent_gap(ds, path)
    return path, False


def gap_probe_stage(out: Path, s: DemoSettings, root: Path, points: list[Point]) -> list[Path]:
    """The probe side of the gap for each base's middle reconstruction point (first
    training seed; needs the standalone refits to compare against)."""
    if not s.standalone:
        log.info("gap, probe side: skipped (no standalone-refit runs to compare with)")
        return []
    paths = []
    for label, run in sorted(gap_probe_point(points, s).items()):
        start = time.perf_counter()
        path, reused = run_gap_probe(out, s, root, label, run)
        log.info("gap, probe side: I_V(Y_b -> Y_e), %s base, %s: %s (%.1f s)", label,
                 Path(run).name, "reused" if reused else "estimated",
                 time.perf_counter() - start)
        paths.append(path)
    return paths


__all__ = ["GAP_PROBE_SEEDS", "file_sha256", "gap_probe_point", "gap_probe_stage",
           "run_gap_probe", "run_vinfo", "vinfo_stage"]
