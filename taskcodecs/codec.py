"""Codec command line: encode an image into a layered bitstream, decode it back.

    python -m taskcodecs.codec encode --checkpoint runs/x/best --input img.png --output img.tcb
    python -m taskcodecs.codec decode --checkpoint runs/x/best --input img.tcb \\
        --layers base|all --output rec.png

``encode`` prints the actual rate (bytes of the file x 8, header included) and the estimated
rate (−log2 likelihoods of the forward pass in eval mode), both in bits per pixel of the
original W x H image, per layer and in total.

``decode`` writes the reconstruction x̂ as an 8-bit RGB PNG at ``--output`` (the base's g_s
for ``--layers base``; g_e's for a reconstruction enhancement with ``--layers all``) and,
next to it, what the decoded task gives:

* depth base: ``<stem>_disparity.png``, 16-bit, Cityscapes encoding p = round(256·d) + 1
  (d in disparity pixels, clipped to 1..65535; every pixel valid, so never 0);
* segmentation enhancement (``--layers all``): ``<stem>_labelIds.png``, 8-bit Cityscapes
  labelIds (train ids mapped back to their official labelIds, as the Cityscapes evaluation
  expects);
* detection base: ``<stem>_detections.json``, boxes (x1, y1, x2, y2 in pixels), COCO
  category ids and scores.

Any error (missing or unreadable file, not an image, an image of more than 8 bits per
channel, corrupt, truncated or foreign bitstream, bytes after the stream's declared end, bad
checkpoint, unwritable output) prints one line ``error: ...`` naming the file on stderr and
exits with status 2 (:mod:`infra.cli`). Inputs: 8-bit images of any layout are
converted to RGB (alpha dropped); 16-bit PNGs are refused, not clipped
(:func:`taskcodecs.data.transforms.open_rgb_image`).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from infra import cli
from infra.io import atomic_write_bytes, check_writable, write_json
from taskcodecs.coding.bitstream import BitstreamError
from taskcodecs.data.labels import CITYSCAPES_LABELS, IGNORE_INDEX
from taskcodecs.data.transforms import open_rgb_image, rgb_to_tensor

# train id (0..18, 19 = ignore) -> Cityscapes labelId (ignore -> 0 "unlabeled")
TRAIN_TO_LABEL = np.zeros(IGNORE_INDEX + 1, dtype=np.uint8)
for _label_id, _name, _train_id in CITYSCAPES_LABELS:
    if _train_id is not None:
        TRAIN_TO_LABEL[_train_id] = _label_id


class CodecCliError(ValueError):
    """A user-facing error of the command line (printed as one line, exit status 2)."""


def _load(checkpoint: str, unverified: bool = False) -> Any:
    from taskcodecs.runs.codecs import load_codec  # heavy (torchvision): only when needed

    return load_codec(checkpoint, unverified=unverified)


def _read_file(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise CodecCliError(f"{path}: {what} not found")
    try:
        return path.read_bytes()
    except OSError as err:
        raise CodecCliError(f"{path}: cannot read {what}: {err.strerror or err}") from err


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _sibling(output: Path, suffix: str) -> Path:
    return output.with_name(f"{output.stem}_{suffix}")


def _layer_lines(values: dict[str, float], unit: str) -> list[str]:
    return [f"    {name:<12} {value:.4f} {unit}" for name, value in values.items()]


# --------------------------------------------------------------------------------- encode


def encode(checkpoint: str, input_path: str, output: str, unverified: bool = False) -> list[str]:
    """Encode ``input_path`` into ``output``; returns the lines printed. ``unverified``: load
    a checkpoint that cannot be verified (:func:`taskcodecs.runs.codecs.load_codec`)."""
    image = rgb_to_tensor(open_rgb_image(Path(input_path), "input image"))
    model = _load(checkpoint, unverified)
    height, width = image.shape[-2:]
    pixels = height * width
    coded = model.compress_latents(image)
    data = coded.to_bytes()
    atomic_write_bytes(output, data)
    with torch.no_grad():
        model.eval()
        estimated = {k: float(v) for k, v in model({"image": image[None]})["bpp"].items()}
    what = f"bits per pixel of the original {width}x{height} image"
    lines = [
        f"encoded {input_path} ({width}x{height}) with {model.codec_id} -> {output}: {len(data)} bytes",
        f"  actual    {len(data) * 8 / pixels:.4f} {what} (all bytes, header included)",
        *_layer_lines({k: len(v) * 8 / pixels for k, v in coded.layers.items()}, "(layer payload)"),
        f"  estimated {sum(estimated.values()):.4f} {what} (-log2 likelihoods, forward pass)",
        *_layer_lines(estimated, "(layer estimate)"),
        f"  decode-time estimate {sum(coded.estimated_bits.values()) / pixels:.4f} {what}",
    ]
    return lines


# --------------------------------------------------------------------------------- decode


def decode(checkpoint: str, input_path: str, output: str, layers: str,
           unverified: bool = False) -> list[str]:
    """Decode ``input_path`` into ``output`` (+ task files next to it); returns the lines."""
    data = _read_file(Path(input_path), "bitstream")
    model = _load(checkpoint, unverified)
    from taskcodecs.models.common import unpack_for  # loaded with the model anyway

    try:
        header = unpack_for(data, model.codec_id, layers=[], identify=model.identify)
        out = model.decompress(data, layers=layers)
    except BitstreamError as err:  # name the file: the message alone says only what is wrong
        raise BitstreamError(f"{input_path}: {err}") from err
    height, width = header.image_size
    output_path = Path(output)
    x_hat = out["x_hat"][0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0)
    atomic_write_bytes(output_path, _png_bytes(x_hat.cpu().numpy()))
    written = [str(output_path)]
    if "labels" in out:
        train_ids = out["labels"][0].cpu().numpy().astype(np.int64)
        path = _sibling(output_path, "labelIds.png")
        atomic_write_bytes(path, _png_bytes(TRAIN_TO_LABEL[train_ids]))
        written.append(str(path))
    if "disparity" in out:
        disparity = out["disparity"][0, 0].double().cpu().numpy()
        values = np.clip(np.round(disparity * 256.0) + 1.0, 1, 65535).astype(np.uint16)
        path = _sibling(output_path, "disparity.png")
        atomic_write_bytes(path, _png_bytes(values))
        written.append(str(path))
    if "detections" in out:
        det = out["detections"][0]
        path = _sibling(output_path, "detections.json")
        write_json(path, {
            "boxes_xyxy": det["boxes"].tolist(),
            "labels": det["labels"].tolist(),
            "scores": det["scores"].tolist(),
        })
        written.append(str(path))
    what = f"bits per pixel of the original {width}x{height} image"
    decoded = ["base"] if layers == "base" else list(header.layer_sizes)
    return [
        f"decoded {input_path} ({model.codec_id}, layers {layers}: {', '.join(decoded)}) -> "
        + ", ".join(written),
        f"  actual    {out['bpp_actual']:.4f} {what} (all {len(data)} bytes, header included)",
        f"  decoded   {out['bpp_actual_decoded']:.4f} {what} (header + the decoded layers)",
        *_layer_lines(
            {k: v * 8 / (height * width) for k, v in header.layer_sizes.items()}, "(layer payload)"
        ),
    ]


# --------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m taskcodecs.codec`` argument parser (every option documented)."""
    parser = argparse.ArgumentParser(
        prog="python -m taskcodecs.codec", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    enc = commands.add_parser("encode", help="image -> layered bitstream")
    enc.add_argument("--checkpoint", required=True, help="codec checkpoint (NAME or NAME.safetensors)")
    enc.add_argument("--input", required=True, help="image file (PNG, JPEG, ...)")
    enc.add_argument("--output", "--out", dest="output", required=True,
                     help="bitstream file to write (--out is the same option)")
    dec = commands.add_parser("decode", help="layered bitstream -> PNG (+ task outputs)")
    dec.add_argument("--checkpoint", required=True, help="the codec checkpoint used to encode")
    dec.add_argument("--input", required=True, help="bitstream file")
    dec.add_argument("--layers", choices=("base", "all"), default="all",
                     help="base: the base layer alone (g_s's picture, the base task); all: "
                          "every layer (default)")
    dec.add_argument("--output", "--out", dest="output", required=True,
                     help="reconstruction PNG to write; task outputs go next to it (--out is "
                          "the same option)")
    for sub in (enc, dec):
        sub.add_argument("--unverified", action="store_true",
                         help="load a checkpoint that cannot be verified (no weights manifest "
                              "or record checksum: written by an old version, or edited); "
                              "refused without it")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; errors and interrupts follow :mod:`infra.cli` (exit 2 / 130)."""
    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    check_writable(args.output, folder=False)
    cli.on_interrupt(f"nothing was written ({args.output} is written whole or not at all)")
    if args.command == "encode":
        lines = encode(args.checkpoint, args.input, args.output, args.unverified)
    else:
        lines = decode(args.checkpoint, args.input, args.output, args.layers, args.unverified)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
