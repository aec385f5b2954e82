"""vinfo: predictive V-information estimates, in bits, for a ladder of probe families.

    import vinfo
    ds = vinfo.estimate(Z, Y, target_kind="categorical", families=["linear", "mlp-64"])
    cfg = vinfo.VinfoConfig(seeds=[0, 1])

``vinfo.estimate`` is the function :func:`vinfo.api.estimate` (its command line is
``python -m vinfo.estimate``, :mod:`vinfo.cli`). Bad inputs raise
:class:`VinfoInputError`. ``vinfo.extract_codec_pairs(run_dir, dataset, target)``
(:mod:`vinfo.adapter.codec`) turns a base codec run and a dataset into (ŷ_b, target) pairs.
Definitions and units: :mod:`vinfo.pvi` and DESIGN §2.
"""

from __future__ import annotations

import importlib
from typing import Any

from vinfo.errors import VinfoInputError

__version__ = "0.1.0"
__all__ = ["VinfoConfig", "VinfoInputError", "__version__", "estimate", "extract_codec_pairs"]


def __getattr__(name: str) -> Any:
    # Lazy: ``import vinfo`` stays light, and the codec library is imported only when used.
    if name == "estimate":
        return importlib.import_module("vinfo.api").estimate
    if name == "VinfoConfig":
        return importlib.import_module("vinfo.config").VinfoConfig
    if name == "extract_codec_pairs":
        return importlib.import_module("vinfo.adapter.codec").extract_codec_pairs
    raise AttributeError(f"module 'vinfo' has no attribute {name!r}")
