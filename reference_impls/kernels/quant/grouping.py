"""Groups along the last dim: the shared per-group reductions of weight formats and KIVI.

A tensor [..., n] is cut into ceil(n / group_size) runs of `group_size` consecutive elements; the last run may be
ragged (shorter), and every reduction ignores its padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def check_group_size(group_size: int) -> None:
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1:
        raise ValueError(f"group_size must be an integer >= 1, got {group_size!r}")


def num_groups(length: int, group_size: int) -> int:
    return -(-length // group_size)


def working_dtype(x: Tensor) -> torch.dtype:
    """The dtype reductions run in: float64 for float64 input, float32 for every other float."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def group_view(x: Tensor, group_size: int, pad_value: float = 0.0) -> Tensor:
    """[..., n] -> [..., groups, group_size], the ragged tail padded with `pad_value` (a copy only when ragged)."""
    check_group_size(group_size)
    groups = num_groups(x.shape[-1], group_size)
    pad = groups * group_size - x.shape[-1]
    if pad:
        x = F.pad(x, (0, pad), value=pad_value)
    return x.reshape(*x.shape[:-1], groups, group_size)


def group_min_max(x: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
    """Per-group minimum and maximum along the last dim ([..., n] -> [..., groups] each), in float32 (float64 for
    float64 input); a ragged last group ignores its padding."""
    check_group_size(group_size)
    x = x.to(working_dtype(x))
    lows = group_view(x, group_size, float("inf")).amin(dim=-1)
    highs = group_view(x, group_size, float("-inf")).amax(dim=-1)
    return lows, highs


def group_absmax(x: Tensor, group_size: int) -> Tensor:
    """Per-group max |x| along the last dim ([..., n] -> [..., groups]), float32 (float64 for float64 input)."""
    return group_view(x.to(working_dtype(x)).abs(), group_size, 0.0).amax(dim=-1)


def expand_groups(per_group: Tensor, group_size: int, length: int) -> Tensor:
    """[..., groups] -> [..., length]: each group's value repeated over its elements."""
    spread = per_group.unsqueeze(-1).expand(*per_group.shape, group_size)  # [..., groups, group_size]
    return spread.reshape(*per_group.shape[:-1], -1)[..., :length]
