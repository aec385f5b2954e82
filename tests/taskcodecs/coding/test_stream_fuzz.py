"""Stream fuzzer: every damaged or forged container a real codec is asked to decode is a
BitstreamError (fixed seed, several hundred cases), never a crash, a hang or a silent decode.

Cases: every truncation, single-bit flips, appended bytes, concatenated streams, swapped
layers, and forged headers (fields changed with the CRCs recomputed, so only the cross
checks against the codec and its latent can catch them).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from taskcodecs.coding.bitstream import Bitstream, BitstreamError, codec_fingerprint, unpack
from taskcodecs.experiments.registry import create_model

HEIGHT, WIDTH = 40, 56  # the depth base codes at half resolution: padded to 64 x 64 (m = 32),
M = 32  # a 2 x 2 latent


@pytest.fixture(scope="module")
def codecs():
    torch.manual_seed(0)
    base = create_model("tiny-depth-base")
    scalable = create_model("tiny-cityscapes-reconstruction-scalable", base=base)
    with torch.no_grad():  # non-trivial latents from untrained weights
        base.f_b.layers[-1].weight.mul_(8.0)
        scalable.f_e.layers[-1].weight.mul_(8.0)
    image = torch.rand(3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))
    return base.eval(), scalable.eval(), base.compress(image), scalable.compress(image)


def _forge(data: bytes, **changes) -> bytes:
    """The container ``data`` with fields replaced and every CRC recomputed."""
    stream = unpack(data)
    fields = {"codec_fingerprint": stream.codec_fingerprint, "image_size": stream.image_size,
              "padding": stream.padding, "layers": stream.layers, **changes}
    return Bitstream(**fields).to_bytes()


def _sized(data: bytes, height: int, width: int, multiple: int = M) -> bytes:
    return _forge(data, image_size=(height, width),
                  padding=(0, (-width) % multiple, 0, (-height) % multiple))


def _cases(base_stream: bytes, stream: bytes, rng: np.random.Generator):
    """(kind, bytes, codec: "base"|"scalable", layers) for every fuzz case."""
    s1, s2 = base_stream, stream
    parsed = unpack(s2)
    b, e = parsed.layers["base"], parsed.layers["enhancement"]
    for end in range(len(s2)):  # truncation at every byte, decoding all or the base alone
        yield "truncation", s2[:end], "scalable", ("all", "base")[end % 2]
    for end in range(0, len(s1), 3):
        yield "truncation", s1[:end], "base", "all"
    for _ in range(100):  # single-bit flips anywhere, header included
        flipped = bytearray(s2)
        flipped[rng.integers(len(s2))] ^= 1 << int(rng.integers(8))
        yield "bit flip", bytes(flipped), "scalable", "all"
    for _ in range(30):
        flipped = bytearray(s1)
        flipped[rng.integers(len(s1))] ^= 1 << int(rng.integers(8))
        yield "bit flip", bytes(flipped), "base", "all"
    for i in range(40):  # appended bytes: zeros, random, a plausible tail
        extra = (bytes(int(rng.integers(1, 9))) if i % 3 == 0 else
                 rng.bytes(int(rng.integers(1, 41))) if i % 3 == 1 else s2[-int(rng.integers(1, 9)):])
        target = (s2, "scalable") if i % 2 else (s1, "base")
        yield "appended", target[0] + extra, target[1], ("all", "base")[i % 4 // 2]
    for first, second, model in ((s2, s2, "scalable"), (s2, s1, "scalable"), (s1, s2, "base"),
                                 (s1, s1, "base"), (s2, s2[:12], "scalable"),
                                 (s1, s1[:1], "base"), (s2, s1, "base"), (s1, s2, "scalable")):
        for layers in ("all", "base"):
            yield "concatenation", first + second, model, layers
    head = len(s2) - len(b) - len(e)
    yield "swapped layers", s2[:head] + e + b, "scalable", "all"  # payloads exchanged
    yield "swapped layers", s2[:head] + e + b, "scalable", "base"
    yield "swapped layers", _forge(s2, layers={"base": e, "enhancement": b}), "scalable", "all"
    yield "swapped layers", _forge(s2, layers={"base": e, "enhancement": b}), "scalable", "base"
    yield "swapped layers", _forge(s2, layers={"base": b, "enhancement": b}), "scalable", "all"
    yield "swapped layers", _forge(s2, layers={"base": e, "enhancement": e}), "scalable", "base"
    yield "swapped layers", _forge(s2, layers={"enhancement": b}), "scalable", "base"
    yield "swapped layers", _forge(s1, layers={"base": e}), "base", "all"
    for dh, dw in [(32, 0), (0, 32), (-32, 0), (0, -32), (25, 9), (32, 64), (-32, -48),
                   (200, 0), (0, 200), (456, 456)]:  # another latent shape, padding consistent
        for data, model in ((s2, "scalable"), (s1, "base")):
            yield "forged size", _sized(data, HEIGHT + dh, WIDTH + dw), model, "all"
    for right, bottom in [(0, 0), (1, 24), (8, 9), (24, 8), (8, 8), (40, 24), (8, 56), (64, 64)]:
        for data, model in ((s2, "scalable"), (s1, "base")):  # padding that is not the codec's
            yield "forged padding", _forge(data, padding=(0, right, 0, bottom)), model, "all"
    for other in ("tiny-depth-base@00000000", "tiny-detection-base@12345678", "x"):
        for data, model in ((s2, "scalable"), (s1, "base")):
            yield "forged codec", _forge(data, codec_fingerprint=codec_fingerprint(other)), model, "all"
    for shift in (1, 2, 3, 5, 8, -1, -2, -4, -8, -16):  # bytes moved across the layer boundary
        if 0 < len(b) + shift < len(b) + len(e):
            joined = b + e
            moved = {"base": joined[:len(b) + shift], "enhancement": joined[len(b) + shift:]}
            for layers in ("all", "base"):
                yield "forged lengths", _forge(s2, layers=moved), "scalable", layers
    for cut in (1, 4, 5, 8):  # a payload shortened or grown with the CRCs recomputed
        yield "forged lengths", _forge(s1, layers={"base": b[:-cut]}), "base", "all"
        yield "forged lengths", _forge(s1, layers={"base": b + bytes(cut)}), "base", "all"
        yield "forged lengths", _forge(s2, layers={"base": b, "enhancement": e[:-cut]}), "scalable", "all"
    for version in (0, 1, 3, 255):
        yield "forged version", s2[:4] + bytes([version]) + s2[5:], "scalable", "all"
    yield "forged layers", _forge(s2, layers={"base": b}), "scalable", "all"  # base-only
    yield "forged layers", _forge(s2, layers={"enhancement": e}), "scalable", "all"
    yield "forged layers", s2[:15] + bytes([0]) + s2[16:], "scalable", "all"  # layer count 0
    yield "forged layers", s2[:15] + bytes([3]) + s2[16:], "scalable", "all"
    for _ in range(20):  # garbage, some with a valid magic and version
        junk = rng.bytes(int(rng.integers(0, 200)))
        yield "garbage", (s2[:5] + junk if rng.random() < 0.5 else junk), "scalable", "all"


def test_fuzzed_streams_are_all_bitstream_errors(codecs):
    base, scalable, s1, s2 = codecs
    models = {"base": base, "scalable": scalable}
    assert scalable.decompress(s2)["x_hat"].shape[-2:] == (HEIGHT, WIDTH)  # the seeds decode
    tried, failed, slowest, kinds = 0, [], (0.0, ""), {}
    for kind, data, model, layers in _cases(s1, s2, np.random.default_rng(15)):
        tried += 1
        kinds[kind] = kinds.get(kind, 0) + 1
        start = time.perf_counter()
        try:
            models[model].decompress(data, layers)
            failed.append((kind, model, layers, "decoded"))
        except BitstreamError as err:
            assert str(err)
        except Exception as err:  # noqa: BLE001 - any other type is a failure of the case
            failed.append((kind, model, layers, f"{type(err).__name__}: {err}"))
        took = time.perf_counter() - start
        slowest = max(slowest, (took, kind))
    print(f"stream fuzzer: {tried} cases tried, {tried - len(failed)} BitstreamError; "
          f"by kind {kinds}; slowest {slowest[0]:.3f} s ({slowest[1]})")
    assert tried >= 300 and not failed, failed[:5]
    assert slowest[0] < 2.0, slowest


def test_a_size_forged_within_the_latent_range_is_a_legal_stream(codecs):
    """The documented limit: every H and W in (32, 64] give this codec its 2 x 2 latent; a
    header re-forged to another such size (padding and CRCs consistent) is a valid stream of
    that size."""
    base, _, s1, _ = codecs
    assert base.padding_multiple == M and base.latent_shape((HEIGHT, WIDTH)) == (2, 2)
    for height, width in ((33, 49), (64, 64), (HEIGHT, WIDTH)):
        assert base.decompress(_sized(s1, height, width))["x_hat"].shape[-2:] == (height, width)
    with pytest.raises(BitstreamError, match="padding"):  # the padding must still agree
        base.decompress(_forge(s1, image_size=(33, 49)))
