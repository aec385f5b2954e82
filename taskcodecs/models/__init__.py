"""Codec models: transforms, entropy models, task heads, base and enhancement codecs.

Names resolve lazily (``from taskcodecs.models import BaseCodec`` imports only what it
needs), so importing one submodule never drags in torchvision's task models.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BaseCodec": "taskcodecs.models.base",
    "BaseCodecConfig": "taskcodecs.models.base",
    "CodedImage": "taskcodecs.models.common",
    "EnhancementCodec": "taskcodecs.models.enhancement",
    "EnhancementCodecConfig": "taskcodecs.models.enhancement",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'taskcodecs.models' has no attribute {name!r}")
