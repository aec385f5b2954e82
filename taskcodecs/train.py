"""``python -m taskcodecs.train``: train one run (the code is :mod:`taskcodecs.training.run`)."""

import sys

from taskcodecs.training.run import main

if __name__ == "__main__":
    sys.exit(main())
