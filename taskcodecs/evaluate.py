"""Evaluate a run through real bitstreams: ``python -m taskcodecs.evaluate RUN_DIR``.

    python -m taskcodecs.evaluate runs/recon [--split val] [--checkpoint best|last] [--limit N]
    python -m taskcodecs.evaluate runs/recon --images kodak/ [--json FILE] [--out DIR]

Every image of the split (the first ``--limit``) is compressed to bytes with the run's
codec, decoded from those bytes and measured, into ``RUN_DIR/eval.nc`` (or ``--out
DIR``/eval.nc); what it holds: :mod:`taskcodecs.evaluation.evaluate`. With ``--images DIR``
the run's codec is evaluated on a folder of PNG/JPEG files instead of a split, like
``compressai.utils.eval_model`` (bpp, PSNR, MS-SSIM, encode/decode seconds; a JSON in
CompressAI's layout and an eval.nc): :mod:`taskcodecs.evaluation.images`. A one-line
summary is printed.

Errors (a missing dataset, a second evaluation writing the same eval.nc) print one line and
exit 2 (:mod:`infra.cli`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infra import cli
from infra.config import ConfigError
from taskcodecs.evaluation.evaluate import evaluate_run, summary


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m taskcodecs.evaluate`` argument parser (every option documented)."""
    parser = argparse.ArgumentParser(prog="python -m taskcodecs.evaluate",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run directory written by taskcodecs.train")
    parser.add_argument("--split", default="val",
                        help="dataset split of the run's dataset to evaluate: train | val "
                             "(default val; ignored with --images)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"),
                        help="which checkpoint of the run: best (lowest validation "
                             "objective) or last (default best)")
    parser.add_argument("--limit", type=cli.positive_int, default=None,
                        help="evaluate the first N images (of the split, or of --images in "
                             "name order)")
    parser.add_argument("--device", default="auto",
                        help="auto | cpu | cuda | cuda:K (default auto)")
    parser.add_argument("--images", metavar="DIR", default=None,
                        help="evaluate on the PNG/JPEG files of DIR instead of a split "
                             "(taskcodecs.evaluation.images): bpp, PSNR, MS-SSIM, "
                             "encode/decode seconds")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="with --images: the compressai.utils.eval_model-style JSON "
                             "(default OUT/results.json)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="folder for eval.nc (default RUN_DIR; with --images "
                             "RUN_DIR/eval-images/<DIR name>)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; errors and interrupts follow :mod:`infra.cli` (exit 2 / 130)."""
    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging()
    if args.json is not None and args.images is None:
        raise ConfigError("--json FILE goes with --images DIR (the split evaluation writes "
                          "eval.nc only)")
    if args.images is not None:
        from taskcodecs.evaluation.images import evaluate_images
        from taskcodecs.evaluation.images import summary as images_summary

        cli.on_interrupt("eval.nc and the JSON were not written (earlier ones, if any, are kept)")
        ds, obj = evaluate_images(args.run_dir, args.images, out=args.out, json_path=args.json,
                                  checkpoint=args.checkpoint, limit=args.limit,
                                  device=args.device)
        out = Path(args.out) if args.out else Path(args.run_dir) / "eval-images" / Path(
            args.images).resolve().name
        print(images_summary(ds, obj) + f" -> {out / 'eval.nc'}, "
              f"{args.json or out / 'results.json'}")
        return 0
    target = Path(args.out or args.run_dir) / "eval.nc"
    cli.on_interrupt(f"{target} was not written (an earlier one, if any, is kept)")
    ds = evaluate_run(args.run_dir, args.split, args.checkpoint, args.limit, args.device,
                      out=args.out)
    print(summary(ds) + f" -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
