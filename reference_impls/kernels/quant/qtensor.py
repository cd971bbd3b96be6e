"""QTensor: a quantized weight exactly as it would be stored, so its size is counted, never estimated."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class QTensor:
    """A quantized tensor: every stored tensor in `payload` (packed codes as uint8, scales as float16, uint8 E8M0
    or float8, packed zero points), plus the small decoding constants in `meta`, which are not counted."""

    format: str  # canonical format name, e.g. "int4-g128-asym"
    shape: tuple[int, ...]  # original shape
    dtype: torch.dtype  # original dtype; dequantize returns it
    payload: dict[str, Tensor]
    meta: dict[str, int | float | str]

    @property
    def storage_bits(self) -> int:
        """Bits really stored: the sum over the payload of numel * element size * 8."""
        return int(sum(t.numel() * t.element_size() * 8 for t in self.payload.values()))

    @property
    def nbytes(self) -> int:
        return self.storage_bits // 8

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def effective_bits(self) -> float:
        """Stored bits per original element: codes, scales, zero points and metadata all counted."""
        return self.storage_bits / self.numel
