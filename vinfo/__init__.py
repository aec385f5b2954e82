"""vinfo: predictive V-information estimates, in bits, for a ladder of probe families.

    import vinfo
    ds = vinfo.estimate(Z, Y, target_kind="categorical", families=["linear", "mlp-64"])
    cfg = vinfo.VinfoConfig(seeds=[0, 1])

``vinfo.estimate`` is the function :func:`vinfo.api.estimate` (its command line is
``python -m vinfo.estimate``, :mod:`vinfo.cli`). Bad inputs raise
:class:`VinfoInputError`. ``vinfo.extract_codec_pairs(run_dir, dataset, target)``
(:mod:`vinfo.adapter.codec`) turns a base codec run and a dataset into (ŷ_b, target) pairs.
``vinfo.estimate_latent_gap(vinfo.extract_enhancement_pairs(scalable_run, dataset))``
(:mod:`vinfo.latent_gap`): I_V(Ŷ_b → Ŷ_e), the probe side of the codec's coding gain.
Definitions and units: :mod:`vinfo.stats.pvi` and DESIGN §2.

Layout, by floor (a module imports its own floor or lower ones; tests/test_architecture.py):

    report/    the report of a result Dataset (document, figures, schema); no other vinfo
    errors     VinfoInputError
    adapter/   the one door into taskcodecs (codec pairs, enhancement latents, layers,
               synthetic scenes, jobs)
    probes/    likelihoods (targets), autoregressive cores, families, the probe (probe),
               the Ŷ_e entropy-model family (latent)
    fit/       settings, splits, the fit loop (loop, ridge), grouped/batched fitting,
               nested rungs (nested), the null bank (nulls), the Ŷ_e probe fit (latent)
    stats/     PVI and per-family estimates (pvi), bootstrap and MDE, loss-data curves,
               prequential MDL, stock lossless codecs
    (top)      inputs (checks, the embedded default), config, results (the result Dataset,
               its documented schema and ``VINFO_VERSION``, the CSV), pipeline, api, cli,
               estimate (``python -m vinfo.estimate``), ladder (``python -m vinfo.ladder``),
               latent_gap (I_V(Ŷ_b → Ŷ_e) and its Dataset)
"""

from __future__ import annotations

from infra.lazy import lazy_exports
from vinfo.errors import VinfoInputError

__version__ = "0.1.0"
__all__ = ["VinfoConfig", "VinfoInputError", "__version__", "estimate", "estimate_latent_gap",
           "extract_codec_pairs", "extract_enhancement_pairs"]

# Lazy: ``import vinfo`` stays light, and the codec library is imported only when used.
# (``estimate`` is the function in vinfo.api, not the module vinfo.estimate.)
__getattr__ = lazy_exports(__name__, {
    "estimate": "vinfo.api",
    "VinfoConfig": "vinfo.config",
    "extract_codec_pairs": "vinfo.adapter.codec",
    "extract_enhancement_pairs": "vinfo.adapter.enhancement",
    "estimate_latent_gap": "vinfo.latent_gap",
})
