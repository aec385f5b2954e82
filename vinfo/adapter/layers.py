"""The codec's building blocks that the probe families reuse (a probe decoder is the codec's
own synthesis transform, so "decodable by g_s-like decoders" means the same network)."""

from taskcodecs.layers import MaskedConv2d, ResidualBlock
from taskcodecs.models.transforms import SynthesisTransform

__all__ = ["MaskedConv2d", "ResidualBlock", "SynthesisTransform"]
