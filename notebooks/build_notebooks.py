"""Write the three notebooks of this folder (nbformat v4, no outputs) from the cells below.

    python notebooks/build_notebooks.py          # rewrites notebooks/0*.ipynb

Edit the cells here, not in the .ipynb files, and rerun. Every notebook starts with a
parameters cell (tag ``parameters``) that reads ``TASKCOMPAT_NB_TINY=1`` (smallest sizes:
the tests execute each notebook this way) and ``TASKCOMPAT_NB_OUT`` (output folder, default
``notebook_output/`` beside the notebook).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
PLOTS = "import matplotlib.pyplot as plt\nimport numpy as np\n"


def indent(code: str) -> str:
    """``code`` indented by four spaces (blank lines left empty)."""
    return "\n".join("    " + line if line else "" for line in code.splitlines())


SETUP = '''\
import os
from pathlib import Path

import infra  # noqa: F401 - hides known third-party warnings (infra.cli.KNOWN_WARNINGS)

TINY = os.environ.get("TASKCOMPAT_NB_TINY") == "1"  # the tests set this: smallest sizes
OUT = Path(os.environ.get("TASKCOMPAT_NB_OUT", "notebook_output")) / "{name}"
'''

IMPORTS = '''\
%matplotlib inline
{plots}import pandas as pd
import torch
from IPython.display import display

torch.set_num_threads(1)  # fastest on a small shared CPU (see the demo section of the README)
OUT.mkdir(parents=True, exist_ok=True)
print("outputs in", OUT.resolve())
'''

DATA = '''\
from taskcodecs.data.synthetic import generate_dataset

DATA = OUT / "data"
if not (DATA / "dataset.json").is_file():
    generate_dataset(DATA, train=N_TRAIN, val=N_VAL, height=64, width=128, seed=0)
print(sorted(p.name for p in DATA.iterdir()))
'''

QUICKSTART = [
    new_markdown_cell("""\
# 01 · Quickstart: a base codec, a real bitstream, its bits per pixel

1. render a few synthetic street scenes (written in the real Cityscapes layout),
2. train a tiny **depth base** codec (the proposed one: with the reconstruction reward) for a
   few steps,
3. encode one image into **bytes**, decode it, and compare the actual rate with the
   estimated one (bits per pixel of the original image), and look at what comes back.

Numbers from a few training steps are not meaningful; the mechanics are the point."""),
    new_code_cell(SETUP.format(name="01_quickstart") + '''
N_TRAIN, N_VAL = (4, 2) if TINY else (16, 4)  # synthetic scenes (64 x 128 pixels)
TRAIN_STEPS = 4 if TINY else 200  # optimizer steps of the base codec
''', metadata={"tags": ["parameters"]}),
    new_code_cell(IMPORTS.format(plots=PLOTS)),
    new_markdown_cell("## 1. Synthetic scenes"),
    new_code_cell(DATA),
    new_code_cell('''\
from taskcodecs.data.cityscapes import CityscapesDataset
from taskcodecs.data.labels import IGNORE_INDEX

item = CityscapesDataset(DATA, "val", targets=("disparity", "labels"))[0]
fig, axes = plt.subplots(1, 3, figsize=(12, 2.6))
axes[0].imshow(item["image"].permute(1, 2, 0))
axes[0].set_title(f"image {tuple(item['image'].shape)}")
shown = axes[1].imshow(np.ma.masked_where(~item["disparity_mask"][0].numpy(),
                                          item["disparity"][0].numpy()))
fig.colorbar(shown, ax=axes[1], label="disparity (pixels)")
axes[1].set_title("disparity target")
axes[2].imshow(np.ma.masked_equal(item["labels"].numpy(), IGNORE_INDEX), cmap="tab20")
axes[2].set_title("semantic labels (train ids)")
for ax in axes:
    ax.axis("off")
plt.show()
'''),
    new_markdown_cell("""\
## 2. Train a tiny base

`tiny-depth-base-proposed` is an experiment config (`taskcodecs/experiments/configs/`); every field can
be overridden. The run directory holds the config, logs and the `best`/`last` checkpoints
(safetensors). A finished run is reused when the notebook is run again."""),
    new_code_cell('''\
from taskcodecs.experiments.table import load_experiment
from taskcodecs.runs.links import checkpoint_path
from taskcodecs.training.run import train

RUN = OUT / "depth-base-proposed"
if not checkpoint_path(RUN, "last").with_suffix(".json").is_file():
    cfg = load_experiment("tiny-depth-base-proposed", {
        "data_root": str(DATA), "out": str(RUN), "max_steps": TRAIN_STEPS,
        "val_every": max(1, TRAIN_STEPS // 4), "log_every": max(1, TRAIN_STEPS // 4),
        "num_workers": 0})
    train(cfg)
log = pd.read_csv(RUN / "log.csv")
val = log[log.phase == "val"]
display(val[["step", "loss", "distortion", "bpp_base", "rmse255"]])
'''),
    new_markdown_cell("""\
## 3. Encode, decode, count the bits

`compress` entropy-codes the image into a layered container (header + base layer); the
*actual* rate is its length in bits over the original pixels, header included. The
*estimated* rate is −log2 of the entropy model's likelihoods (no bytes involved)."""),
    new_code_cell('''\
from taskcodecs.coding.bitstream import unpack
from taskcodecs.runs.codecs import load_codec

model = load_codec(checkpoint_path(RUN, "best")).eval()
image = item["image"]
height, width = image.shape[-2:]
pixels = height * width

data = model.compress(image)  # bytes
decoded = model.decompress(data)
stream = unpack(data)
coded = model.compress_latents(image)
with torch.no_grad():
    forward = model({"image": image[None]})

print(f"bitstream: {len(data)} bytes = {stream.header_size} header + "
      f"{stream.layer_sizes['base']} base-layer payload")
print(f"actual rate:    {len(data) * 8 / pixels:.4f} bits per pixel of the {height}x{width} image "
      f"(payload alone {stream.layer_sizes['base'] * 8 / pixels:.4f})")
print(f"estimated rate: {coded.estimated_bits['base'] / pixels:.4f} bits per pixel at decode time, "
      f"{float(forward['bpp']['base']):.4f} in the training forward pass")
same = torch.equal(coded.y_hat["base"], decoded["y_hat"]["base"])
print(f"decoded latent equals the encoder's: {same}; shape {tuple(decoded['y_hat']['base'].shape)}")
'''),
    new_code_cell('''\
from taskcodecs.evaluation.metrics import MaskedRMSE, psnr

x_hat = decoded["x_hat"]
rmse = MaskedRMSE()
rmse.update(decoded["disparity"], item["disparity"][None], item["disparity_mask"][None])
fig, axes = plt.subplots(2, 2, figsize=(10, 4.6))
axes[0, 0].imshow(image.permute(1, 2, 0))
axes[0, 0].set_title("original")
axes[0, 1].imshow(x_hat[0].permute(1, 2, 0).clamp(0, 1))
axes[0, 1].set_title(f"g_a(decoded Y_b): PSNR {float(psnr(x_hat, image[None])[0]):.2f} dB")
limits = dict(vmin=0, vmax=float(item["disparity"].max()))
axes[1, 0].imshow(np.ma.masked_where(~item["disparity_mask"][0].numpy(),
                                     item["disparity"][0].numpy()), **limits)
axes[1, 0].set_title("disparity target (pixels; white: no disparity)")
axes[1, 1].imshow(decoded["disparity"][0, 0], **limits)
axes[1, 1].set_title(f"decoded disparity: RMSE {rmse.compute():.3f} px")
for ax in axes.flat:
    ax.axis("off")
fig.suptitle(f"{len(data) * 8 / pixels:.4f} bits per pixel (actual)")
plt.show()
'''),
]

FIGURES = [
    new_markdown_cell("""\
# 02 · Reproduce the figures from a runs directory

By default this notebook runs a **tiny sweep** itself — baseline and proposed depth bases at two
rate weights, then the scalable reconstruction and its standalone refit on each base, every
run evaluated through real bitstreams — and draws the paper's figures, BD-rates and the gap
table from the `eval.nc` files it finds. Point `RUNS_DIR` at any other runs folder (e.g.
`demo_output/sweeps` after `make demo`, or a paper-scale sweep) to draw those instead."""),
    new_code_cell(SETUP.format(name="02_reproduce_figures") + '''
RUNS_DIR = None  # None: run the tiny sweep below into OUT/sweeps; or a folder of */eval.nc
N_TRAIN, N_VAL = (4, 2) if TINY else (16, 8)
BASE_STEPS, RECON_STEPS = (3, 3) if TINY else (200, 150)
BASE_RATE_WEIGHTS = [1e-3, 1.0]
RECON_RATE_WEIGHTS = [0.3, 30.0]
''', metadata={"tags": ["parameters"]}),
    new_code_cell(IMPORTS.format(plots="")),
    new_markdown_cell("## 1. The tiny sweep (skipped when `RUNS_DIR` is given)"),
    new_code_cell('''\
from taskcodecs.sweeps.sweep import gather, plan, run_point

if RUNS_DIR is None:
''' + indent(DATA) + '''
    def sweep(config, rate_weights, steps, folder, **kwargs):
        overrides = {"data_root": str(DATA), "max_steps": steps, "num_workers": 0,
                     "val_every": max(1, steps // 2), "log_every": max(1, steps // 2)}
        points = plan(config, rate_weights, out=folder, **kwargs)
        for point in points:  # a finished point (its eval.nc exists) is reused
            run_point(point, overrides, split="val", limit=N_VAL)
            print("done:", Path(point.run_dir).name)
        return points, gather(points, folder, config)

    bases, base_sweep = sweep("tiny-depth-base-proposed", BASE_RATE_WEIGHTS, BASE_STEPS,
                              OUT / "sweeps" / "depth-base", reward_weights=[0.1],
                              methods=["baseline", "proposed"], bases={})
    chosen = {p.method: p.run_dir for p in bases if p.rate_weight == BASE_RATE_WEIGHTS[0]}
    recon, recon_sweep = sweep("tiny-cityscapes-reconstruction-scalable", RECON_RATE_WEIGHTS,
                               RECON_STEPS, OUT / "sweeps" / "reconstruction", reward_weights=[],
                               methods=["scalable", "standalone-refit"], bases=chosen)
    RUNS_DIR = OUT / "sweeps"
    print("sweep.nc dims:", dict(base_sweep.sizes), "and", dict(recon_sweep.sizes))
'''),
    new_markdown_cell("""\
## 2. The runs found

One row per run: mean actual rate (bits per pixel of the original image, real bitstream,
header included) per layer and in total, and the metrics as stored (`map`/`miou` as
fractions, `rmse` in disparity pixels, `psnr` in dB)."""),
    new_code_cell('''\
from analysis import load_runs, runs_table

runs = load_runs(RUNS_DIR)
table = runs_table(runs)
table["run"] = table["run"].str.rsplit("/", n=1).str[-1]
display(table[["run", "method", "task", "base", "rate_weight", "bpp_base", "bpp_total",
               "bpp_total_estimated", "psnr", "rmse"]].round(4))
'''),
    new_markdown_cell("""\
## 3. The paper's figures

Each figure is built only from runs that exist; what is missing is said under it (this tiny
sweep has no COCO or segmentation runs)."""),
    new_code_cell('''\
from analysis import all_figures

for result in all_figures(runs):
    display(result.figure)
    print(result.caption)
    for line in result.missing:
        print("  missing:", line)
'''),
    new_markdown_cell("""\
## 4. BD-rates and the gap

BD-rate: the test curve's rate relative to the reference at equal quality over the quality
interval both cover (Akima by default; negative = the test saves rate). The gap table puts
the base rate R(Ŷ_b) next to the conditional coding gain (standalone − scalable total rate at
matched quality), both in bits per original-image pixel."""),
    new_code_cell('''\
from analysis import gap_rows
from analysis.report import bd_comparisons

rows, missing = bd_comparisons(runs, method="akima")
display(pd.DataFrame([{"comparison": r["comparison"], "BD-rate (%)": round(r["result"].percent, 3),
                       "method": r["result"].method, "quality overlap": r["result"].overlap,
                       "warnings": "; ".join(r["result"].warnings)} for r in rows]))
gaps, _ = gap_rows(runs)
display(pd.DataFrame([{"base": g["base"], "target": g["target"], "R(Y_b) (bpp)": g["base_bpp"],
                       "gain vs standalone-refit (bpp)": g["gain_standalone-refit_bpp"]}
                      for g in gaps]))
'''),
    new_markdown_cell("## 5. The self-contained report"),
    new_code_cell('''\
from analysis import write_report

paths = write_report(RUNS_DIR, OUT / "report")
print("HTML report (opens offline):", paths["html"])
print("Markdown:", paths["markdown"], "with", len(paths["figures"]), "figures")
'''),
]

VINFO = [
    new_markdown_cell("""\
# 03 · The V-information gap: baseline vs proposed bases

How much of the image can a decoder of family V extract from the base representation Ŷ_b?
For a **ladder** of probe families (linear, MLP, CNN) this notebook estimates

  I_V(Ŷ_b → X) = H_V(X | ∅) − H_V(X | Ŷ_b)   in bits per pixel (3 sub-pixels summed),

with a discretized logistic likelihood over the 8-bit values, for a baseline base (no
reconstruction reward) and a proposed one, with bootstrap intervals, and draws where in the
image the information is (pointwise V-information maps). Ŷ_b is decoded from each image's real
bitstream, and its actual rate is drawn for comparison (same unit: bits per image pixel)."""),
    new_code_cell(SETUP.format(name="03_vinformation_gap") + '''
BASES = None  # None: train two tiny bases below; or {"baseline": RUN_DIR, "proposed": RUN_DIR}
DATA_ROOT = None  # the dataset of BASES (None: the synthetic scenes made below)
N_TRAIN, N_VAL = (4, 12) if TINY else (16, 48)  # vinfo uses every val image
BASE_STEPS = 3 if TINY else 250
FAMILIES = ["ar-linear", "ar-mlp-16"] if TINY else ["ar-linear", "ar-mlp-64", "ar-cnn-1x32"]
PROBE_STEPS, PROBE_EVAL_EVERY = (10, 5) if TINY else (150, 10)  # budget: part of the family V
SEEDS = [0] if TINY else [0, 1]  # refits: the intervals include their variance
BOOTSTRAP = 100 if TINY else 1000
''', metadata={"tags": ["parameters"]}),
    new_code_cell(IMPORTS.format(plots=PLOTS)),
    new_markdown_cell("## 1. Two bases: baseline and proposed (skipped when `BASES` is given)"),
    new_code_cell('''\
from taskcodecs.sweeps.sweep import plan, run_point

if BASES is None:
''' + indent(DATA) + '''
    overrides = {"data_root": str(DATA), "max_steps": BASE_STEPS, "num_workers": 0,
                 "val_every": max(1, BASE_STEPS // 2), "log_every": max(1, BASE_STEPS // 2),
                 "val_limit": 4}
    points = plan("tiny-depth-base-proposed", [1e-3], [0.1], ["baseline", "proposed"], {},
                  OUT / "bases")
    for point in points:
        run_point(point, overrides, split="val", limit=4)
    BASES = {p.method: p.run_dir for p in points}
    DATA_ROOT = DATA
print(BASES)
'''),
    new_markdown_cell("""\
## 2. Decoded base latents and targets

The codec adapter (`vinfo.adapter`, also `python -m vinfo.estimate --codec RUN --dataset DIR
--target reconstruction`) codes every validation image: compress → bytes → decompress →
Ŷ_b `[C, h, w]`; the target is the image as 8-bit integers `[3, H, W]`."""),
    new_code_cell('''\
from vinfo.adapter.codec import extract_codec_pairs

pairs = {label: extract_codec_pairs(run, DATA_ROOT, "reconstruction", split="val")
         for label, run in BASES.items()}
for label, found in pairs.items():
    print(f"{label}: Z {found.Z.shape}, Y {found.Y.shape} {found.Y.dtype}, "
          f"R(Y_b) = {found.representation_bpp:.4f} bits per image pixel (actual)")
'''),
    new_markdown_cell("""\
## 3. The ladder

The families are *autoregressive* (`ar-…`): each pixel's sub-pixels are scored given every
pixel before it (a causal masked convolution) and, for the conditional, Ŷ_b through the rung's
Z pathway (linear, MLP, CNN). Their held-out losses are lossless codelengths in bits per
pixel, so H_V(X|Ŷ_b) — what is left to code of the image given the base — sits next to the
base's actual rate R(Ŷ_b) in the same unit. Each rung's null is the same network fed zeros
instead of Ŷ_b (with a learned per-position map), trained together with it (Ŷ_b dropped for
half of every batch); the same held-out images are used for both bases (the split depends
only on the seed and the number of images).

Sending Ŷ_b at its actual rate and then X with the probe is a lossless two-part code, so
H(X) ≤ R(Ŷ_b) + H_V(X|Ŷ_b). The capped I_V = min(H_V(X|∅), R + H_V(X|Ŷ_b)) − H_V(X|Ŷ_b) is
therefore at most R(Ŷ_b): usable bits per transmitted bit ≤ 1. Where the cap binds, the raw
I_V measures the weakness of the null, not information in Ŷ_b."""),
    new_code_cell('''\
import vinfo
from vinfo.fit.nulls import NullBank

results, bank = {}, NullBank()  # factorized families: the bases share their null
for label, found in pairs.items():
    results[label] = vinfo.estimate(
        found.Z, found.Y, families=FAMILIES, seeds=SEEDS, max_steps=PROBE_STEPS,
        eval_every=PROBE_EVAL_EVERY, patience=3, batch_size=8, bootstrap=BOOTSTRAP,
        curves=False, null_bank=bank, **found.estimate_kwargs())
    results[label].to_netcdf(OUT / f"vinfo-{label}.nc", engine="h5netcdf")


def cell(ds, name, i):
    return f"{ds[name].values[i]:.3f} [{ds[name + '_low'].values[i]:.3f}, " \
           f"{ds[name + '_high'].values[i]:.3f}]"


table = pd.DataFrame([{"base": label, "family": family, "R(Y_b)": f"{float(ds['rate_per_unit']):.3f}",
                       "H_V(X|Y_b)": cell(ds, "h_cond", i), "I_V": cell(ds, "vinfo", i),
                       "capped I_V": cell(ds, "vinfo_capped", i)}
                      for label, ds in results.items() for i, family in enumerate(FAMILIES)])
units = next(iter(results.values()))["vinfo"].attrs["units"]
print(f"All in {units} of the image [95% intervals over held-out images and refits]")
display(table)
'''),
    new_code_cell('''\
fig, ax = plt.subplots(figsize=(7, 3.6))
for j, (label, ds) in enumerate(results.items()):
    x = np.arange(len(FAMILIES)) + (j - 0.5) * 0.2
    value = ds["vinfo_capped"].values
    err = np.abs(np.stack([value - ds["vinfo_capped_low"].values,
                           ds["vinfo_capped_high"].values - value]))
    line = ax.errorbar(x, value, yerr=err, fmt="o", capsize=3, label=f"{label}: capped I_V")
    ax.axhline(float(ds["rate_per_unit"]), color=line[0].get_color(), ls="--",
               label=f"{label}: R(Y_b), actual")
ax.set_xticks(np.arange(len(FAMILIES)), FAMILIES)
ax.set_ylabel(f"capped I_V and R(Y_b) ({units})")
ax.axhline(0, color="black", lw=0.8)
ax.set_title("usable by family V (points, <= R) vs transmitted (dashed)")
ax.legend(fontsize=8)
plt.show()
'''),
    new_markdown_cell("""\
## 4. Pointwise V-information maps

Per pixel: −log2 f_null(x) + log2 f_Ŷ_b(x) for the richest family, in bits per pixel (red:
Ŷ_b helped the probe, blue: it misled it, white: no difference), on the same held-out images for
both bases, in the vinfo report's colour scale (`vinfo.report.figures.pvi_color_scale`:
symmetric around 0; maps that are all 0 stay white)."""),
    new_code_cell('''\
from vinfo.report.figures import pvi_color_scale

richest = FAMILIES[-1]
examples = list(next(iter(results.values()))["example"].values)[:3]
fig, axes = plt.subplots(len(results) + 1, len(examples), figsize=(4 * len(examples), 6.5),
                         squeeze=False)
scale = pvi_color_scale(*(ds["pvi_map"].sel(family=richest).values for ds in results.values()))
first = next(iter(pairs.values()))
for k, example in enumerate(examples):
    axes[0, k].imshow(first.Y[example].transpose(1, 2, 0))
    axes[0, k].set_title(f"held-out image {example}")
    for row, (label, ds) in enumerate(results.items(), 1):
        pvi = ds["pvi_map"].sel(family=richest, example=example).values
        shown = axes[row, k].imshow(pvi, interpolation="nearest", **scale)
        axes[row, k].set_title(f"{label}: mean {np.nanmean(pvi):.2f} bits/pixel")
for ax in axes.flat:
    ax.axis("off")
fig.colorbar(shown, ax=axes[1:].ravel().tolist(), label=f"PVI ({richest}), bits per pixel")
plt.show()
'''),
]


def build(folder: Path = HERE) -> list[Path]:
    """Write the notebooks into ``folder``; returns their paths."""
    written = []
    for name, cells in (("01_quickstart", QUICKSTART), ("02_reproduce_figures", FIGURES),
                        ("03_vinformation_gap", VINFO)):
        for i, cell in enumerate(cells):
            cell.id = f"{name[:2]}-{i:02d}"  # stable ids: a rebuild changes nothing
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}})
        nbformat.validate(nb)
        path = Path(folder) / f"{name}.ipynb"
        nbformat.write(nb, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in build():
        print("wrote", path)
