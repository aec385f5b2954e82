"""The networks' building blocks, shared by the entropy models (coding) and the codecs (models).

* :mod:`~taskcodecs.layers.residual`: the ELIC residual bottleneck block and its stacks;
* :mod:`~taskcodecs.layers.resample`: 5x5 strided (transposed) convs, DownSample, UpSample;
* :mod:`~taskcodecs.layers.masked`: MaskedConv2d (type A, B, checkerboard);
* :mod:`~taskcodecs.layers.padding`: padding an image to a multiple of the downsampling.

Like CompressAI's ``compressai.layers``: modules with no knowledge of codecs, bitstreams or
tasks. A stage below :mod:`taskcodecs.coding` (the README's dependency rule).
"""

from taskcodecs.layers.masked import MASK_TYPES, MaskedConv2d
from taskcodecs.layers.padding import Padding, crop_padding, pad_to_multiple
from taskcodecs.layers.resample import DownSample, UpSample, conv5x5_down, deconv5x5_up
from taskcodecs.layers.residual import ResidualBlock, residual_stack

__all__ = [
    "MASK_TYPES",
    "DownSample",
    "MaskedConv2d",
    "Padding",
    "ResidualBlock",
    "UpSample",
    "conv5x5_down",
    "crop_padding",
    "deconv5x5_up",
    "pad_to_multiple",
    "residual_stack",
]
