"""Codec models: transforms, entropy models, task heads, base and enhancement codecs.

Names resolve lazily (``from taskcodecs.models import BaseCodec`` imports only what it
needs), so importing one submodule never drags in torchvision's task models.
"""

from __future__ import annotations

from infra.lazy import lazy_exports

_EXPORTS = {
    "BaseCodec": "taskcodecs.models.base",
    "BaseCodecConfig": "taskcodecs.models.base",
    "CodedImage": "taskcodecs.models.common",
    "EnhancementCodec": "taskcodecs.models.enhancement",
    "EnhancementCodecConfig": "taskcodecs.models.enhancement",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
