"""``make demo`` / ``make study``: the whole pipeline, end to end, on synthetic scenes, on a CPU.

    python -m taskcompat.demo [--out demo_output] [--study | --quick] [--threads 1] [--verbose]

Stages (:mod:`taskcompat.demo_steps`; every one cached, so a rerun does only what is missing):

1. data: 192 train + 40 val synthetic street scenes of 64x128 px (Cityscapes layout) in OUT/data
2. depth bases: baseline (reward_weight 0) and proposed (reward_weight 0.1), both
   *rate-targeted* to the same estimated base rate (0.03 bpp; :mod:`taskcodecs.training.rate_control`),
   evaluated through real bitstreams on the first 32 val images -> OUT/sweeps/depth-base/;
   the depth model without a codec (the figure's reference line) -> OUT/sweeps/depth-uncompressed/
3. reconstruction: the scalable reconstruction on each base at 5 total-rate targets (the
   lowest trained from scratch, each next one warm-started from it), and the standalone refit
   of each point (the conditional coding gain) -> OUT/sweeps/cityscapes-reconstruction/;
   (study) a CompressAI mbt2018-mean codec at the same total-rate targets, the
   standalone-independent reference (base + its stream) -> OUT/sweeps/compressai-reconstruction/
4. (study) the same for scalable segmentation -> OUT/sweeps/cityscapes-segmentation/
5. vinfo: the V-information ladders of both bases (:func:`demo_vinfo.vinfo_stage`), then
   the gap's probe side: I_V(Ŷ_b → Ŷ_e) of each base's middle reconstruction point, the
   number beside its operational coding gain (:func:`demo_vinfo.gap_probe_stage`, issue 20
   item 4) -> OUT/vinfo/LABEL/latent_gap/RUN/latent_gap.nc, in the report's gap section
6. report: OUT/report/report.html (+ .md, figures/), led by the results table
7. the results table, printed first: proposed vs baseline at matched base rate, every number
   with its paired-bootstrap interval (:mod:`analysis.results_table`), then the runs, the
   rate-targeting accuracy, the BD-rates and the V-information ladders (units always said)

``--study`` (``make study``) runs the same pipeline with 3 training seeds, more data, 3 base
rates, 5 reconstruction points and segmentation (into demo_output/study/); ``--quick`` every
stage at the smallest sizes (a smoke test of the pipeline: numbers meaningless, and its
summary says so and prints no verdict; demo_output/quick/).
``--threads`` sets ``torch.set_num_threads`` (default 1: on the 2-core dev machine one thread
was never much slower than two, and up to 8x faster while other jobs ran). An OUT folder made
with other settings is refused (exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from infra import cli
from infra.io import check_writable, write_json
from taskcompat.demo_steps import (
    DemoSettings,
    check_settings,
    enhancement_bases,
    make_data,
    train_bases,
    train_compressai,
    train_enhancements,
    train_reference,
)
from taskcompat.demo_summary import summary_lines
from taskcompat.demo_vinfo import gap_probe_stage, vinfo_stage

log = logging.getLogger("taskcompat.demo")
QUIET = ("taskcodecs.training.run", "taskcodecs.sweeps.sweep", "taskcodecs.evaluation.evaluate", "taskcompat.demo.detail")


class _Console(logging.Handler):
    """Log lines to stderr through ``tqdm.write``, so they do not break the progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _setup_logging(verbose: bool) -> None:
    handler = _Console()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    if not verbose:  # the run's own train.log keeps every line; the console gets the stages
        handler.addFilter(lambda r: r.levelno >= logging.WARNING
                          or not r.name.startswith(QUIET))
    handler.name = "taskcompat.demo"
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == handler.name]:  # main() called again
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    cli.filter_known_warnings()  # the one filter (compressai's torch.jit.script warning)


def run_demo(out: Path, settings: DemoSettings) -> dict:
    """Run every stage (module docstring) into ``out``; returns what the summary prints from."""
    check_settings(out, settings)
    write_json(out / "demo.json", {"settings": settings.as_dict()})
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def stage(name: str, number: int, func, *args):
        log.info("[stage %d/6] %s", number, name)
        start, start_cpu = time.perf_counter(), time.process_time()
        result = func(*args)
        times[name] = times.get(name, 0.0) + time.perf_counter() - start
        cpu[name] = cpu.get(name, 0.0) + time.process_time() - start_cpu
        return result

    root = stage("synthetic scenes", 1, make_data, out, settings)
    chosen_by_seed, recon_points = {}, {}
    for seed in settings.seeds:
        bases = stage("depth bases", 2, train_bases, out, settings, root, seed)
        chosen_by_seed[seed] = enhancement_bases(bases, settings)
    stage("codec-free depth reference", 2, train_reference, out, settings, root)
    for seed, chosen in chosen_by_seed.items():
        recon_points[seed] = stage("scalable reconstruction", 3, train_enhancements, out,
                                   settings, root, chosen, seed)
        if settings.compressai_reference:
            stage("CompressAI reference", 3, train_compressai, out, settings, root, seed)
        if settings.segmentation:
            stage("scalable segmentation", 4, train_enhancements, out, settings, root, chosen,
                  seed, "segmentation")
    chosen = chosen_by_seed[settings.seeds[0]]
    vinfo_dirs = stage("V-information ladders", 5, vinfo_stage, out, settings, root, chosen)
    # issue 20 item 4: I_V(Ŷ_b → Ŷ_e) of each base's middle point, beside its coding gain
    stage("gap, probe side", 5, gap_probe_stage, out, settings, root,
          recon_points[settings.seeds[0]])

    def report():
        from analysis.report import write_report

        return write_report(out / "sweeps", out / "report", vinfo=vinfo_dirs,
                            n_boot=settings.bootstrap, verdicts=not settings.smoke_test)

    paths = stage("analysis report", 6, report)
    return {"out": out, "bases": chosen, "report": paths, "vinfo_dirs": vinfo_dirs,
            "times": times, "cpu": cpu}


# ---------------------------------------------------------------------------- the command line


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m taskcompat.demo`` argument parser (the module docstring is its help)."""
    parser = argparse.ArgumentParser(prog="python -m taskcompat.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default demo_output/, with --quick "
                             "demo_output/quick/, with --study demo_output/study/)")
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true",
                        help="smallest sizes, every stage (a smoke test; numbers not meaningful)")
    preset.add_argument("--study", action="store_true",
                        help="make study: 3 seeds, more data and rate points, segmentation")
    parser.add_argument("--seed", type=cli.non_negative_int, default=None,
                        help="one training seed for every run instead of the preset's "
                             "(e.g. a second demo to check that its verdict survives a rerun; "
                             "use another --out)")
    parser.add_argument("--threads", type=cli.positive_int, default=1,
                        help="torch threads (default 1)")
    parser.add_argument("--verbose", action="store_true", help="show every training line")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; errors and interrupts follow :mod:`infra.cli` (exit 2 / 130)."""
    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    torch.set_num_threads(args.threads)
    settings = (DemoSettings.quick() if args.quick else DemoSettings.study() if args.study
                else DemoSettings())
    if args.seed is not None:
        settings = dataclasses.replace(settings, seeds=(args.seed,))
    default = "quick" if args.quick else "study" if args.study else ""
    out = args.out or Path("demo_output") / default
    start = time.perf_counter()
    check_writable(out)
    cli.on_interrupt(f"the finished stages in {out} are kept; rerun the same command to "
                     "continue (every stage is cached)")
    result = run_demo(out, settings)
    took = time.perf_counter() - start
    stages = ", ".join(f"{k} {v:.0f} s (CPU {result['cpu'][k]:.0f} s)"
                       for k, v in result["times"].items())
    print(f"\n== demo finished in {took / 60:.1f} min ({stages}; {args.threads} thread(s); "
          f"load average {os.getloadavg()[0]:.2f}) ==")
    print("\n".join(summary_lines(result, settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
