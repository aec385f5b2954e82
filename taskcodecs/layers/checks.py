"""Argument checks shared by the building blocks: clear errors for bad channel counts."""

from __future__ import annotations


def check_positive(**channels: int) -> None:
    """Raise ``ValueError`` naming the first argument that is not a positive integer."""
    for name, value in channels.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
