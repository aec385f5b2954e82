"""``python -m taskcodecs.evaluate``: evaluate a run (the code is :mod:`taskcodecs.evaluation.evaluate`)."""

import sys

from taskcodecs.evaluation.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
