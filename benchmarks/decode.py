"""Benchmark: base-layer decoding (wavefront) against CompressAI's mbt2018 raster decoding.

    python benchmarks/decode.py            # 512x768 image, 5 timed runs of each contender
    python benchmarks/decode.py --quick    # 256x384 image, about a minute

Contenders (seed 0, untrained, then *calibrated* identically: the last layer of each
parameter network scaled by 0.05 with its bias set to σ = 1, μ = 0, as an untrained
network otherwise predicts σ below the scale bound and escape-codes every symbol):

* **ours**: ``paper-detection-base`` (N = 192 latent channels, codes the image at full
  resolution, latent 32x48 for 512x768). Decoding = payload bytes -> ŷ_b (masked 5x5
  context, wavefront order 3·row + col, float64 parameter network on one thread) -> x̂ by
  g_a. The task head is not run (CompressAI has none).
* **ours raster**: the same model and latent coded and decoded one position at a time.
* **compressai**: ``JointAutoregressiveHierarchicalPriors(N=128, M=192)`` = mbt2018's
  architecture, latent 32x48x192 for 512x768, decoded as shipped: strings -> ẑ -> ŷ
  (raster, one position per step) -> x̂ by g_s.
* **ours checkerboard**: the same base with ``context=checkerboard`` (two passes).

Both entropy models code the *same* latent, N(0, 1) of shape (1, 192, h/16, w/16) (CompressAI's
g_a is replaced by a module returning it), so symbol counts and rANS work match. Each is
timed twice: decoding the latent (bytes -> ŷ: CompressAI's decompress with g_s replaced by
the identity, i.e. ẑ, h_s and the autoregressive loop) and decoding to the image (bytes ->
x̂, each codec's own synthesis transform included; ours, g_a with 3 residual blocks per
stage, is heavier than mbt2018's g_s). All contenders run with the same torch thread count
(``--threads``, default 1: on the 2-vCPU dev machine two threads were several times slower
for both codecs). Printed: payload bytes and bits per pixel of the 512x768 image (entropy
payloads only, our 23-30 byte container header excluded), the wavefront-vs-raster payload
difference, each run and the medians. Last line: ``ratio decode_vs_compressai`` =
CompressAI median / ours median for decoding the latent (wavefront), i.e. how many times
faster; the ratio to the image is printed above it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import timing  # noqa: E402

import infra  # noqa: E402,F401 - hides known third-party warnings (infra.cli.KNOWN_WARNINGS)

# isort: split
from compressai.models import JointAutoregressiveHierarchicalPriors  # noqa: E402

from taskcodecs.experiments.registry import create_model  # noqa: E402


class FixedLatent(torch.nn.Module):
    """Stands in for CompressAI's g_a so that its entropy model codes a given latent."""

    def __init__(self, y: torch.Tensor) -> None:
        super().__init__()
        self.y = y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.y


@torch.no_grad()
def calibrate(entropy_parameters: torch.nn.Sequential, latent_ch: int) -> None:
    """Last layer x 0.05, bias: σ = 1 for the first ``latent_ch`` outputs, μ = 0 after."""
    last = entropy_parameters[-1]
    last.weight.mul_(0.05)
    last.bias[:latent_ch] = 1.0
    last.bias[latent_ch:] = 0.0


def ours_model(**overrides):
    torch.manual_seed(0)
    model = create_model("paper-detection-base", **overrides).eval()
    calibrate(model.entropy_model.entropy_parameters, model.latent_ch)
    return model


def compressai_model(y: torch.Tensor) -> JointAutoregressiveHierarchicalPriors:
    torch.manual_seed(0)
    net = JointAutoregressiveHierarchicalPriors(N=128, M=192).eval()
    calibrate(net.entropy_parameters, 192)
    net.update(force=True)
    net.g_a = FixedLatent(y)
    return net


def main() -> None:
    p = timing.parser(__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads for every contender")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (256, 384) if args.quick else (512, 768)
    runs = args.runs or 5
    pixels = height * width
    print(f"machine: {timing.machine()}")
    print(f"image {height}x{width}, {runs} timed runs per contender after one warm-up run")
    ours, checker = ours_model(), ours_model(context="checkerboard")
    shape = ours.latent_shape((height, width))
    padding = ours.analyze(torch.zeros(1, 3, height, width))[1]
    y = torch.randn(1, 192, *shape, generator=torch.Generator().manual_seed(1))
    net = compressai_model(y)
    latent_only = compressai_model(y)
    latent_only.g_s = torch.nn.Identity()  # CompressAI's decompress without its synthesis

    with torch.no_grad():
        payloads = {"ours": ours.entropy_model.compress(y),
                    "ours raster": ours.entropy_model.compress(y, order="raster"),
                    "ours checkerboard": checker.entropy_model.compress(y)}
        coded = net.compress(torch.zeros(1, 3, height, width))
        wavefront = ours.entropy_model.decompress(payloads["ours"], shape)
        raster = ours.entropy_model.decompress(payloads["ours raster"], shape)
    sizes = {name: len(p) for name, p in payloads.items()}
    sizes["compressai"] = sum(len(s[0]) for s in coded["strings"])
    print(f"latent 192x{shape[0]}x{shape[1]}; payloads (bits per pixel of the {height}x{width} "
          "image, entropy payload only):")
    for name, size in sizes.items():
        print(f"  {name:<24} {size:>9} bytes = {8 * size / pixels:.4f} bpp")
    gap = (sizes["ours"] - sizes["ours raster"]) / sizes["ours raster"]
    print(f"  wavefront vs raster: {100 * gap:+.3f} % bytes; decoded ŷ identical: "
          f"{torch.equal(wavefront, raster)}")

    def latent(model, payload):
        return lambda: model.entropy_model.decompress(payload, shape)

    def image(model, payload):
        return lambda: model.reconstruct(model.entropy_model.decompress(payload, shape), padding)

    contenders = {
        "ours latent": latent(ours, payloads["ours"]),
        "ours raster latent": latent(ours, payloads["ours raster"]),
        "ours checkerboard latent": latent(checker, payloads["ours checkerboard"]),
        "compressai latent": lambda: latent_only.decompress(coded["strings"], coded["shape"]),
        "ours image": image(ours, payloads["ours"]),
        "compressai image": lambda: net.decompress(coded["strings"], coded["shape"]),
    }
    with torch.no_grad():
        seconds = timing.interleaved(contenders, runs)
    medians = {name: timing.median(v) for name, v in seconds.items()}
    for name, value in medians.items():
        print(f"median {name:<26} {value:8.3f} s")
    cai = medians["compressai latent"]
    print(f"latent: CompressAI / ours raster {cai / medians['ours raster latent']:.2f}x, "
          f"/ ours checkerboard {cai / medians['ours checkerboard latent']:.2f}x; "
          f"ours raster / ours wavefront {medians['ours raster latent'] / medians['ours latent']:.2f}x")
    print(f"to the image: CompressAI / ours {medians['compressai image'] / medians['ours image']:.2f}x")
    timing.print_ratio("decode_vs_compressai", cai / medians["ours latent"])


if __name__ == "__main__":
    main()
