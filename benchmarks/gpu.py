"""Benchmark: the paper presets, decoding and probe fitting on one CUDA device.

    python benchmarks/gpu.py                 # on a CUDA machine: < 8 min, writes RESULTS.md
    python benchmarks/gpu.py --dry-run       # every item on the CPU at tiny sizes (smoke test)
    python benchmarks/gpu.py --budget-s 300 --no-write

Without CUDA (and without ``--dry-run``) it says so and exits 0, measuring nothing.

Items, each in its own subprocess with a hard time cap (a compile that hangs or an
out-of-memory error costs one row, not the run), started only while the total budget
(``--budget-s``, default 420 s) still covers the item's cap:

1. **Training steps/s and peak memory** of one base and one enhancement per dataset at the
   real resolution and the paper's batch size per GPU: ``paper-depth-base-proposed`` and
   ``paper-cityscapes-reconstruction-scalable`` (Cityscapes 1024x2048, batch 4),
   ``paper-detection-base-proposed`` and ``paper-coco-reconstruction-scalable`` (a COCO-sized
   480x640 image with 5 boxes, batch 1; the detector resizes it to 800x1067 inside), each
   with ``amp`` none / bf16 and ``compile`` off / on (inductor; compile-off rows first).
   No dataset is needed or read: the inputs are **random tensors of the real shapes**, task
   networks untrained (``pretrained=false``), the enhancement's frozen base untrained too.
   A step is the trainer's (``taskcodecs.training.precision``: autocast, Adam, clip 1.0); after 3
   warm-up steps (their time, which includes compiling, is reported) up to 30 steps or 10 s
   are timed. Peak = ``torch.cuda.max_memory_allocated`` during the timed steps.
2. **Decoding** the paper detection base at 512x768 against CompressAI's mbt2018, both on
   the GPU, with the setup and helpers of ``benchmarks/decode.py`` (same calibrated
   untrained models, same latent). Our entropy decoding runs on the CPU in float64 by design
   (bitstreams must not depend on the device); only g_a runs on the GPU. CompressAI runs its
   raster loop on the GPU.
3. **Probe fitting throughput**: ``vinfo.estimate(Z, Y, target_kind="categorical",
   families=["linear", "cnn-1x32"], device="cuda")`` on a latent grid shaped like the
   Cityscapes depth base's at 512x1024 (Z [128, 192, 16, 32]) with 19-class labels at
   256x512; wall seconds and optimizer steps per second. If ``vinfo.estimate`` does not take
   ``device=`` yet, the row says so and the rest still runs.

The tables go to ``benchmarks/RESULTS.md`` between the ``gpu.py`` markers, with the device
named (``--results PATH`` elsewhere, ``--no-write`` to only print).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import torch  # noqa: E402

BEGIN, END = "<!-- gpu.py:begin -->", "<!-- gpu.py:end -->"
# (dataset, experiment, height, width); the batch size is the experiment's own
PRESETS = [("cityscapes", "paper-depth-base-proposed", 1024, 2048),
           ("cityscapes", "paper-cityscapes-reconstruction-scalable", 1024, 2048),
           ("coco", "paper-detection-base-proposed", 480, 640),
           ("coco", "paper-coco-reconstruction-scalable", 480, 640)]
CAPS = {"train": 60, "train-compile": 150, "decode": 120, "probes": 90}


def plan(dry: bool) -> list[dict]:
    """The items in the order they run: compile-off rows, decode, probes, compile-on rows.
    ``dry``: each preset once at tiny size (amp alternating) and one compiled row."""
    def train(d, e, h, w, amp, compile_):
        return {"kind": "train", "dataset": d, "experiment": e, "size": [h, w], "amp": amp,
                "compile": compile_}

    others = [{"kind": "decode"}, {"kind": "probes"}]
    if dry:
        tiny = [(d, e.replace("paper-", "tiny-"), 64, 128) for d, e, _, _ in PRESETS]
        rows = [train(*p, ("none", "bf16")[i % 2], False) for i, p in enumerate(tiny)]
        return rows + others + [train(*tiny[0], "bf16", True)]
    off = [train(*p, amp, False) for amp in ("none", "bf16") for p in PRESETS]
    on = [train(*p, amp, True) for amp in ("bf16", "none") for p in PRESETS]
    return off + others + on


def cap_of(item: dict) -> int:
    return CAPS["train-compile" if item.get("compile") else item["kind"]]


# ------------------------------------------------------------------------------ items


def _batch(dataset: str, experiment: str, n: int, h: int, w: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(n, 3, h, w, generator=g)}
    if dataset == "coco":
        xy = torch.rand(n, 5, 2, generator=g) * torch.tensor([w / 2, h / 2])
        boxes = torch.cat([xy, xy + 16 + torch.rand(n, 5, 2, generator=g) * torch.tensor([w / 2, h / 2])], -1)
        batch["targets"] = [{"boxes": b, "labels": torch.randint(1, 91, (5,), generator=g)} for b in boxes]
    elif "depth" in experiment:
        batch["disparity"] = torch.rand(n, 1, h, w, generator=g) * 100
        batch["disparity_mask"] = torch.rand(n, 1, h, w, generator=g) > 0.1
    from taskcodecs.runs.run_data import move_to_device

    return move_to_device(batch, device)


def train_item(item: dict, device: torch.device, dry: bool) -> dict:
    from taskcodecs.experiments.registry import create_model
    from taskcodecs.experiments.table import load_experiment
    from taskcodecs.training.precision import Precision, compile_transforms

    cfg = load_experiment(item["experiment"])
    weights = {k: getattr(cfg, k) for k in ("rate_weight", "reward_weight") if getattr(cfg, k) is not None}
    torch.manual_seed(0)
    model = create_model(cfg.model, **{**cfg.model_overrides, "pretrained": False}, **weights)
    model = model.to(device).train()
    if item["compile"]:
        compile_transforms(model, "aot_eager" if dry else "inductor")
    params = list(model.trainable_parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    precision = Precision(item["amp"], device)
    h, w = item["size"]
    batch = _batch(item["dataset"], item["experiment"], cfg.batch_size, h, w, device)

    def step() -> None:
        with precision.autocast():
            loss = model.loss(batch, model(batch))["loss"]
        precision.step(loss, optimizer, params, cfg.clip)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    for _ in range(1 if dry else 3):
        step()
    sync()
    warmup = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps, start = 0, time.perf_counter()
    while steps < (2 if dry else 30) and time.perf_counter() - start < 10:
        step()
        steps += 1
    sync()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"batch": cfg.batch_size, "steps_per_s": steps / seconds,
            "images_per_s": steps * cfg.batch_size / seconds, "peak_gib": peak,
            "warmup_s": warmup, "steps": steps}


def decode_item(item: dict, device: torch.device, dry: bool) -> dict:
    import decode
    import timing

    height, width = (128, 192) if dry else (512, 768)
    ours = decode.ours_model().to(device)
    shape = ours.latent_shape((height, width))
    padding = ours.analyze(torch.zeros(1, 3, height, width, device=device))[1]
    y = torch.randn(1, 192, *shape, generator=torch.Generator().manual_seed(1)).to(device)
    net = decode.compressai_model(y).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        payload = ours.entropy_model.compress(y)
        coded = net.compress(torch.zeros(1, 3, height, width, device=device))

        def timed(fn):
            return lambda: (fn(), sync())

        contenders = {
            "ours latent (CPU float64 coder)": timed(lambda: ours.entropy_model.decompress(payload, shape)),
            "ours image (g_a on the device)": timed(lambda: ours.reconstruct(
                ours.entropy_model.decompress(payload, shape), padding)),
            "compressai mbt2018 image": timed(lambda: net.decompress(coded["strings"], coded["shape"])),
        }
        seconds = timing.interleaved(contenders, 1 if dry else 3, log=lambda s: None)
    medians = {k: timing.median(v) for k, v in seconds.items()}
    return {"size": [height, width], "medians_s": medians,
            "ratio_image": medians["compressai mbt2018 image"] / medians["ours image (g_a on the device)"]}


def probes_item(item: dict, device: torch.device, dry: bool) -> dict:
    import vinfo
    from infra.config import ConfigError

    g = torch.Generator().manual_seed(0)
    n, c, h, w, th, tw = (12, 8, 2, 4, 8, 16) if dry else (128, 192, 16, 32, 256, 512)
    z = torch.randn(n, c, h, w, generator=g)
    y = torch.randint(0, 19, (n, th, tw), generator=g)
    kwargs = {"target_kind": "categorical", "families": ["linear", "cnn-1x32"], "seeds": [0],
              "bootstrap": 20 if dry else 200, "curves": False, "max_steps": 5 if dry else 200,
              "num_classes": 19}
    start = time.perf_counter()
    try:
        ds = vinfo.estimate(z.numpy(), y.numpy(), device=str(device), **kwargs)
    except (TypeError, ConfigError) as err:
        if "device" not in str(err):
            raise
        status = f"vinfo.estimate does not take device= yet ({str(err).split(';')[0]})"
        if not dry:
            return {"status": f"not run: {status}"}
        start = time.perf_counter()  # dry run: the rest of the item still gets exercised
        ds = vinfo.estimate(z.numpy(), y.numpy(), **kwargs)
        kwargs["status"] = f"ok on the CPU without device=: {status}"
    seconds = time.perf_counter() - start
    steps = int(ds["train_steps"].sum()) * 2  # a null and a conditional probe per family
    return {"status": kwargs.get("status", "ok"), "shape_z": [n, c, h, w], "shape_y": [n, th, tw],
            "seconds": seconds,
            "steps_per_s": steps / seconds, "steps": steps}


ITEMS = {"train": train_item, "decode": decode_item, "probes": probes_item}


def run_item(item: dict, dry: bool) -> dict:
    device = torch.device("cpu" if dry else "cuda")
    try:
        return {"status": "ok"} | ITEMS[item["kind"]](item, device, dry)
    except torch.cuda.OutOfMemoryError as err:
        return {"status": f"out of memory ({str(err).splitlines()[0]})"}


def isolated(item: dict, dry: bool, cap: float) -> dict:
    """``run_item`` in a subprocess killed after ``cap`` seconds."""
    command = [sys.executable, __file__, "--item", json.dumps(item)] + (["--dry-run"] if dry else [])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=cap)
    except subprocess.TimeoutExpired:
        return {"status": f"not finished within its {cap:.0f} s cap"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": f"failed (exit {done.returncode}): {last}"}
    return json.loads(lines[-1][len("RESULT "):])


# ------------------------------------------------------------------------------ report


def describe_device(dry: bool) -> str:
    import timing

    if dry:
        return f"DRY RUN on the CPU (tiny presets, 64x128; not a measurement): {timing.machine()}"
    p = torch.cuda.get_device_properties(0)
    return (f"{p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
            f"torch {torch.__version__}; host: {timing.machine()}")


def render(results: list[tuple[dict, dict]], device: str, seconds: float, command: str) -> str:
    lines = [f"Device: **{device}**. Run {_dt.date.today().isoformat()} with "
             f"`{command}` in {seconds:.0f} s. Inputs are random tensors of the "
             "real shapes (no dataset on the machine); task networks untrained.", "",
             "| preset | input (batch x H x W) | amp | compile | steps/s | images/s | peak GiB "
             "| warm-up s (incl. compile) | status |", "|---|---|---|---|---|---|---|---|---|"]
    for item, r in results:
        if item["kind"] != "train":
            continue
        shape = f"{r.get('batch', '?')} x {item['size'][0]}x{item['size'][1]}"
        nums = [f"{r[k]:.2f}" if r.get(k, math.nan) == r.get(k, math.nan) and k in r else "–"
                for k in ("steps_per_s", "images_per_s", "peak_gib", "warmup_s")]  # NaN: –
        lines.append(f"| `{item['experiment']}` | {shape} | {item['amp']} | "
                     f"{'on' if item['compile'] else 'off'} | {' | '.join(nums)} | {r['status']} |")
    for item, r in results:
        if item["kind"] == "decode":
            size = "x".join(map(str, r.get("size", ["512", "768"])))
            lines += ["", f"Decoding (`benchmarks/decode.py` setup, {size}): {r['status']}"]
            for name, value in r.get("medians_s", {}).items():
                lines.append(f"- {name}: {value:.3f} s (median)")
            if "ratio_image" in r:
                lines.append(f"- CompressAI / ours, to the image: {r['ratio_image']:.2f}x")
        if item["kind"] == "probes":
            text = r["status"]
            if "seconds" in r:
                text = (f"{text}; Z {r['shape_z']}, Y {r['shape_y']} (19 classes), families linear and "
                        f"cnn-1x32, one seed: {r['seconds']:.1f} s, {r['steps']} optimizer steps, "
                        f"{r['steps_per_s']:.1f} steps/s")
            lines += ["", f"Probe fitting (`vinfo.estimate(..., device=\"cuda\")`): {text}"]
    return "\n".join(lines)


def write_results(path: Path, table: str) -> None:
    from infra.io import atomic_write

    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} section to replace")
    head, rest = text.split(BEGIN, 1)
    new = f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}"
    atomic_write(path, lambda tmp: Path(tmp).write_text(new))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (smoke test)")
    p.add_argument("--budget-s", type=float, default=420.0, help="total seconds for all items")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--no-write", action="store_true", help="print the tables only")
    p.add_argument("--isolate", action="store_true", help="subprocesses in --dry-run too")
    p.add_argument("--only", help="comma-separated kinds to run: train, compile, decode, probes")
    p.add_argument("--item", help=argparse.SUPPRESS)  # internal: one item, JSON
    args = p.parse_args(argv)
    if args.item:
        print("RESULT " + json.dumps(run_item(json.loads(args.item), args.dry_run)))
        return 0
    if not args.dry_run and not torch.cuda.is_available():
        print(f"benchmarks/gpu.py: no CUDA device here (torch {torch.__version__}, "
              "torch.cuda.is_available() is False): nothing measured, "
              f"{args.results} left unchanged. Run it on a machine with a CUDA GPU; "
              "--dry-run runs every item at tiny sizes on the CPU.")
        return 0
    if args.dry_run:
        torch.set_num_threads(1)
    device = describe_device(args.dry_run)
    print(f"device: {device}")
    start, results = time.perf_counter(), []
    kinds = set((args.only or "train,compile,decode,probes").split(","))
    for item in plan(args.dry_run):
        if ("compile" if item.get("compile") else item["kind"]) not in kinds:
            continue
        left = args.budget_s - (time.perf_counter() - start)
        cap = min(cap_of(item), left)
        if cap < cap_of(item) and not args.dry_run:
            result = {"status": f"not run: {left:.0f} s of the {args.budget_s:.0f} s budget left, "
                                f"its cap is {cap_of(item)} s"}
        elif args.dry_run and not args.isolate:
            result = run_item(item, True)
        else:
            result = isolated(item, args.dry_run, cap)
        results.append((item, result))
        print(json.dumps({**item, **result}), flush=True)
    command = " ".join(["python benchmarks/gpu.py", *(argv if argv is not None else sys.argv[1:])])
    table = render(results, device, time.perf_counter() - start, command)
    print(table)
    if not args.no_write:
        write_results(args.results, table)
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
