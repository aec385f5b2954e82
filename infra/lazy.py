"""Lazy package exports: ``from pkg import Name`` imports the module that defines ``Name``
only when the name is first used (PEP 562), so importing a package stays light.

    # pkg/__init__.py
    from infra.lazy import lazy_exports

    _EXPORTS = {"Name": "pkg.module", ...}
    __all__ = sorted(_EXPORTS)
    __getattr__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps each exported name to the
    module that defines it; any other name raises the usual ``AttributeError``."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
