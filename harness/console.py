"""Terminal output shared by the CLI's commands: one console, human units."""

from __future__ import annotations

from rich.console import Console

console = Console(highlight=False, soft_wrap=True)


def format_seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def format_si(value: float, unit: str) -> str:
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def default_device() -> str:
    """cuda when this machine has a usable GPU, else cpu."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
