"""The autoregressive core's fast paths compute what the plain model computes."""

from __future__ import annotations

import torch

from taskcodecs.layers.masked import MaskedConv2d
from vinfo.fit.loop import crop_batch
from vinfo.probes.autoregressive import CausalConv2d
from vinfo.probes.families import build_core, null_spec
from vinfo.probes.targets import make_target


def test_the_half_kernel_causal_conv_equals_the_masked_conv():
    torch.manual_seed(0)
    for mask_type, kernel in (("A", 5), ("B", 3), ("A", 3)):
        plain = MaskedConv2d(6, 10, kernel, padding=kernel // 2, mask_type=mask_type)
        fast = CausalConv2d(6, 10, kernel, padding=kernel // 2, mask_type=mask_type)
        fast.load_state_dict(plain.state_dict())
        x = torch.randn(3, 6, 9, 13)
        assert torch.allclose(fast(x), plain(x), atol=1e-5)


def test_a_crops_scored_pixels_have_their_whole_image_loss():
    """crop_batch's margin covers the causal field and the MED anchor: the null trained on
    crops optimises exactly the whole-image loss of the scored pixels (no border bias)."""
    torch.manual_seed(0)
    y = (torch.randint(0, 256, (6, 3, 20, 40)) // 32 * 32).long()
    mask = torch.ones_like(y, dtype=torch.bool)
    mask[0, :, 3:6, 10:20] = False
    target = make_target("discretized", y, mask, 256)
    core = build_core(null_spec("autoregressive"), target, y, mask, True, 8, 5, 2, 4, 2)
    with torch.no_grad():
        for p in core.parameters():
            p.add_(0.1 * torch.randn_like(p))
        full = core.stat(core(None, y, mask), y, mask)
        generator = torch.Generator().manual_seed(1)
        for crop in (4, 8, 30):
            ys, ms, scored, top, left = crop_batch(y, mask, crop, core.margin, generator)
            assert scored.any() and (scored <= ms).all()
            value = core.stat(core(None, ys, ms, offset=(top, left)), ys, ms)
            for i in range(len(y)):
                window = full[i, :, top[i] : top[i] + ys.shape[2], left[i] : left[i] + ys.shape[3]]
                assert torch.allclose(value[i][scored[i]], window[scored[i]], atol=1e-4)
