"""What one evaluated run is: :class:`Run`, the metrics it reports and their units.

A :class:`Run` is a point of an RD curve: where it is, what experiment it is (family, method,
task, dataset: the vocabulary of ``taskcodecs.experiments.table``, imported from there, no
torch), its mean rates per layer (bits per pixel of the original image, cumulative over
layers) and its metrics at the top layer. :mod:`analysis.run_files` reads one from disk;
:mod:`analysis.runs` loads a whole runs directory and draws curves from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskcodecs.experiments.table import BASE_METHODS, COMPRESSAI_METHODS, REFERENCE_METHODS
from taskcodecs.experiments.table import FAMILIES as _EXPERIMENT_FAMILIES
from taskcodecs.models.names import MODES

METHODS = (*BASE_METHODS, *MODES, *REFERENCE_METHODS, *COMPRESSAI_METHODS)
# experiment family → (task, dataset), from the experiment table (the one source of truth)
FAMILIES = {name: (family.task, family.dataset) for name, family in _EXPERIMENT_FAMILIES.items()}
TASK_METRIC = {"depth": "rmse", "detection": "map", "reconstruction": "psnr",
               "segmentation": "miou"}
BPP_UNITS = ("bits/pixel", "bit/pixel", "bpp", "bits per pixel")


@dataclass(frozen=True)
class Metric:
    name: str
    label: str  # axis label, with the unit shown
    higher_is_better: bool
    scale: float = 1.0  # stored value (as read, unit "1") → shown value


METRICS = {
    "psnr": Metric("psnr", "PSNR (dB)", True),
    "map": Metric("map", "box mAP@[.5:.95] (%)", True, 100.0),
    "rmse": Metric("rmse", "disparity RMSE (pixels), lower is better", False),
    "miou": Metric("miou", "mIoU (%)", True, 100.0),
}


class RunsError(ValueError):
    """A runs directory or one of its files cannot be read; the message names the file."""


@dataclass
class Run:
    """One evaluated run: where it is, what it is, its mean rates and metrics."""

    path: Path
    name: str  # path relative to the runs directory
    experiment: str
    family: str
    method: str
    task: str
    dataset: str
    rate_weight: float | None
    reward_weight: float | None
    bpp: dict[str, float]  # layer → mean bpp_actual, cumulative (bits per original-image pixel)
    bpp_estimated: dict[str, float]
    metrics: dict[str, float]  # metric → value at the top layer (as stored: "1" not %)
    n_images: int
    config: dict[str, Any] = field(repr=False)
    codec_id: str = ""
    base_ref: str | None = None  # the config's ``base`` (enhancements)
    base: Run | None = field(default=None, repr=False)  # resolved base run, if found
    base_method: str | None = None
    base_reward_weight: float | None = None
    # rate-targeted runs (taskcodecs.training.rate_control; eval.nc attrs): the target and what the
    # selected checkpoint achieved (validation, estimated bpp), the final rate weight
    rate_target: float | None = None
    rate_selected_bpp: float = float("nan")
    rate_on_target: bool = False
    rate_weight_final: float | None = None
    # half-width of the 95% normal interval of each image mean ("rate", "psnr", "rmse")
    spread: dict[str, float] = field(default_factory=dict, repr=False)
    # layer → mean bpp_payload (bpp_actual without the container header; empty for eval.nc
    # files written before it existed)
    bpp_payload: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def role(self) -> str:
        if self.method in BASE_METHODS:
            return "base"
        if self.method in COMPRESSAI_METHODS:
            return "standalone"  # a CompressAI zoo codec, no base (taskcodecs.experiments.table)
        return "reference" if self.method == "uncompressed" else "enhancement"

    @property
    def bpp_total(self) -> float:
        """The rate of the whole stream: the top layer's cumulative rate."""
        return _top(self.bpp)

    @property
    def bpp_estimated_total(self) -> float:
        return _top(self.bpp_estimated)

    @property
    def bpp_payload_total(self) -> float:
        """The payloads of the whole stream, header excluded (NaN where not recorded)."""
        return _top(self.bpp_payload) if self.bpp_payload else float("nan")

    @property
    def bpp_enhancement(self) -> float:
        """The enhancement layer's own rate (total − base); NaN for single-layer runs."""
        if "enhancement" not in self.bpp or "base" not in self.bpp:
            return float("nan")
        return self.bpp["enhancement"] - self.bpp["base"]

    @property
    def base_variant(self) -> str:
        """Which base this point belongs to: "baseline", "proposed (reward_weight=0.1)", ..."""
        if self.role == "base":
            return variant_label(self.method, self.reward_weight)
        if self.role in ("reference", "standalone"):
            return ""
        return variant_label(self.base_method, self.base_reward_weight)


def _top(by_layer: dict[str, float]) -> float:
    """The value at the top layer ("enhancement" where present) of cumulative rates."""
    if not by_layer:
        return float("nan")
    return float(by_layer.get("enhancement", list(by_layer.values())[-1]))


def variant_label(method: str | None, reward_weight: float | None) -> str:
    if method is None:
        return "unknown base"
    if method == "proposed" and reward_weight is not None:
        return f"proposed (reward_weight={reward_weight:g})"
    return method
