"""vinfo: predictive V-information estimates, in bits, for a ladder of probe families.

    import vinfo
    ds = vinfo.estimate(Z, Y, target_kind="categorical", families=["linear", "mlp-64"])
    cfg = vinfo.VinfoConfig(seeds=[0, 1])

``vinfo.estimate`` is the function :func:`vinfo.api.estimate` (its command line is
``python -m vinfo.estimate``, :mod:`vinfo.cli`). Bad inputs raise
:class:`VinfoInputError`. ``vinfo.extract_codec_pairs(run_dir, dataset, target)``
(:mod:`vinfo.adapter.codec`) turns a base codec run and a dataset into (ŷ_b, target) pairs.
Definitions and units: :mod:`vinfo.stats.pvi` and DESIGN §2.
"""

from __future__ import annotations

from infra.lazy import lazy_exports
from vinfo.errors import VinfoInputError

__version__ = "0.1.0"
__all__ = ["VinfoConfig", "VinfoInputError", "__version__", "estimate", "extract_codec_pairs"]

# Lazy: ``import vinfo`` stays light, and the codec library is imported only when used.
# (``estimate`` is the function in vinfo.api, not the module vinfo.estimate.)
__getattr__ = lazy_exports(__name__, {
    "estimate": "vinfo.api",
    "VinfoConfig": "vinfo.config",
    "extract_codec_pairs": "vinfo.adapter.codec",
})
