"""taskcodecs: scalable learned codecs for machine tasks, with real layered bitstreams.

    from taskcodecs import list_models, create_model, load_codec
    model = create_model("tiny-depth-base")
    data = model.compress(image)            # image [3, H, W] in [0, 1] -> bytes
    out = model.decompress(data, layers="base")

The names below are imported lazily: ``import taskcodecs`` stays light.
"""

from __future__ import annotations

from infra.lazy import lazy_exports

_EXPORTS = {
    "list_models": "taskcodecs.experiments.registry",
    "create_model": "taskcodecs.experiments.registry",
    "model_config": "taskcodecs.experiments.registry",
    "load_codec": "taskcodecs.runs.codecs",
    "save_codec": "taskcodecs.runs.codecs",
    "list_experiments": "taskcodecs.experiments.table",
    "load_experiment": "taskcodecs.experiments.table",
    "BitstreamError": "taskcodecs.coding.bitstream",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
