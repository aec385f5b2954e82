"""vinfo: predictive V-information estimates, in bits, for a ladder of probe families.

    import vinfo
    ds = vinfo.estimate(Z, Y, target_kind="categorical", families=["linear", "mlp-64"])
    cfg = vinfo.VinfoConfig(seeds=[0, 1])

``vinfo.estimate`` is the module :mod:`vinfo.estimate` (also ``python -m vinfo.estimate``)
and is callable as :func:`vinfo.estimate.estimate`. Bad inputs raise
:class:`VinfoInputError`. ``vinfo.extract_codec_pairs(run_dir, dataset, target)``
(:mod:`vinfo.adapter`) turns a base codec run and a dataset into (ŷ_b, target) pairs.
Definitions and units: :mod:`vinfo.pvi` and DESIGN §2.
"""

from __future__ import annotations

import importlib
from typing import Any

from vinfo.data import VinfoInputError

__version__ = "0.1.0"
__all__ = ["VinfoConfig", "VinfoInputError", "__version__", "estimate", "extract_codec_pairs"]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``python -m vinfo.estimate`` does not find the module imported already.
    if name in ("estimate", "VinfoConfig"):
        module = importlib.import_module("vinfo.estimate")
        return module if name == "estimate" else module.VinfoConfig
    if name == "extract_codec_pairs":  # lazy too: it imports the codec library
        return importlib.import_module("vinfo.adapter").extract_codec_pairs
    raise AttributeError(f"module 'vinfo' has no attribute {name!r}")
