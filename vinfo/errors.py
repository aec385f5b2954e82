"""The one error type of vinfo's inputs (arrays, files, vinfo.nc results): a ValueError whose
message names the input and what was expected."""

from __future__ import annotations


class VinfoInputError(ValueError):
    """An input file or array is missing, malformed or does not fit the target kind."""
