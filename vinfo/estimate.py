"""``python -m vinfo.estimate``: the V-information estimator's command line.

    python -m vinfo.estimate --representations Z.npy --targets Y.npy --target-kind categorical \\
        [--families linear,mlp-64] [--seeds 0,1,2] --out DIR [key=value ...]
    python -m vinfo.estimate --codec RUN_DIR --dataset DIR --target reconstruction --out DIR
    python -m vinfo.estimate        # the embedded default (placeholder inputs, vinfo.inputs)

This file only runs :func:`vinfo.cli.main`; import that (or :mod:`vinfo.api`) instead of
this module: ``vinfo.estimate`` is the Python function :func:`vinfo.api.estimate`, and
importing a submodule of the same name would put the module in its place.
"""

import sys

from vinfo.cli import main

if __name__ == "__main__":
    sys.exit(main())
