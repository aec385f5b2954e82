"""The words every stage of the codec library uses, defined once (no imports: light).

- :data:`PRESETS` -- model sizes: ``paper`` (the paper's widths, real resolution) and
  ``tiny`` (CPU-sized); every model name and experiment name starts with one.
- :data:`MODES` -- how an enhancement codes its target over the base; an enhancement
  experiment's *method* is its mode (``{preset}-{dataset}-{target}-{mode}``).
"""

PRESETS = ("paper", "tiny")
MODES = ("scalable", "direct", "standalone-refit", "standalone-independent")
