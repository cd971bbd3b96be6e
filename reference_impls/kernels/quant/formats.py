"""The one registry of weight formats: every workload quantizes and dequantizes through a name looked up here.

A Format is a pair of plain functions (quantize -> QTensor, dequantize -> tensor in the input dtype) plus the
per-element error bound it guarantees. Family modules register their formats when imported; the registry imports
the modules named in FAMILY_MODULES on first lookup, so importing this module stays cheap and cycle-free.
Weights are 2-D [out_features, in_features]; groups and blocks run along the last (input) dim.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from reference_impls.kernels.quant.qtensor import QTensor

FAMILY_MODULES: tuple[str, ...] = (
    "reference_impls.kernels.quant.casts",
    "reference_impls.kernels.quant.rtn",
    "reference_impls.kernels.quant.nf4",
    "reference_impls.kernels.quant.microscaling",
    "reference_impls.kernels.quant.nvfp4",
    "reference_impls.kernels.quant.ternary",
    "reference_impls.kernels.quant.outlier",
    "reference_impls.kernels.quant.bitmod",
    "reference_impls.kernels.quant.gptq",
    "reference_impls.kernels.quant.awq",
    "reference_impls.kernels.quant.dfloat11",
)

FLOAT_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


@dataclass(frozen=True)
class Format:
    """One weight format. `description` is its exact definition in one or two lines; `error_bound(w, q)` is the
    per-element max |w - dequantize(q)| it guarantees (0 for lossless, None where the method trades it away)."""

    name: str
    family: str
    description: str
    quantize: Callable[[Tensor, Tensor | None], QTensor]
    dequantize: Callable[[QTensor], Tensor]
    error_bound: Callable[[Tensor, QTensor], Tensor] | None
    needs_calibration: bool = False
    lossless: bool = False


_REGISTRY: dict[str, Format] = {}
_ALIASES: dict[str, str] = {}
_LOADED: list[bool] = [False]


def register_format(fmt: Format) -> Format:
    """Add a format; a name registered twice (or clashing with an alias) raises."""
    if fmt.name in _REGISTRY or fmt.name in _ALIASES:
        raise ValueError(f"format {fmt.name!r} is already registered")
    _REGISTRY[fmt.name] = fmt
    return fmt


def register_alias(alias: str, name: str) -> None:
    """Let `alias` stand for the registered format `name` (e.g. int4-g128 -> int4-g128-asym)."""
    if alias in _REGISTRY or _ALIASES.get(alias, name) != name:
        raise ValueError(f"alias {alias!r} is already taken")
    if name not in _REGISTRY:
        raise ValueError(f"alias {alias!r} points at unregistered format {name!r}")
    _ALIASES[alias] = name


def _load_families() -> None:
    if not _LOADED[0]:
        _LOADED[0] = True
        for module in FAMILY_MODULES:
            importlib.import_module(module)


def format_names() -> list[str]:
    """Canonical names of every registered format (aliases excluded), sorted."""
    _load_families()
    return sorted(_REGISTRY)


def get_format(name: str) -> Format:
    """The format registered as `name` (or an alias of it); an unknown name raises, suggesting the nearest."""
    _load_families()
    if not isinstance(name, str):
        raise ValueError(f"format name must be a string, got {name!r}")
    if name in _ALIASES:
        name = _ALIASES[name]
    if name not in _REGISTRY:
        known = sorted(_REGISTRY)
        close = difflib.get_close_matches(name, known + sorted(_ALIASES), n=4, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown format {name!r}{hint} Known formats: {', '.join(known)}")
    return _REGISTRY[name]


def check_weight(w: Tensor, what: str = "weight") -> None:
    """A weight must be a finite, non-empty 2-D float tensor [out_features, in_features]."""
    if not isinstance(w, Tensor):
        raise ValueError(f"{what} must be a torch.Tensor, got {type(w).__name__}")
    if w.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{what} must have a float dtype ({', '.join(map(str, FLOAT_DTYPES))}), got {w.dtype}")
    if w.dim() != 2:
        raise ValueError(f"{what} must be 2-D [out_features, in_features], got {w.dim()}-D {tuple(w.shape)}")
    if w.numel() == 0:
        raise ValueError(f"{what} must be non-empty, got shape {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{what} must be finite (no inf or nan)")


def quantize(w: Tensor, name: str, calibration: Tensor | None = None) -> QTensor:
    """Quantize a 2-D weight into the named format (calibration activations [tokens, in] where it needs them)."""
    fmt = get_format(name)
    check_weight(w)
    if fmt.needs_calibration and calibration is None:
        raise ValueError(f"format {fmt.name!r} needs calibration activations [tokens, {w.shape[1]}]")
    return fmt.quantize(w, calibration)


def dequantize(q: QTensor) -> Tensor:
    """The weight a QTensor stands for, in its original dtype."""
    return get_format(q.format).dequantize(q)


def error_bound(w: Tensor, q: QTensor) -> Tensor:
    """Per-element bound on |w - dequantize(q)| (float64) from q's format; ValueError where it has none."""
    fmt = get_format(q.format)
    if fmt.error_bound is None:
        raise ValueError(f"format {fmt.name!r} guarantees no per-element error bound")
    return fmt.error_bound(w, q)


def output_rounding(values: Tensor, dtype: torch.dtype) -> Tensor:
    """Largest error of rounding `values` (float64) to `dtype`: half an ulp, i.e. unit roundoff times |value|,
    or half the smallest subnormal spacing below the normal range."""
    info = torch.finfo(dtype)
    return torch.maximum(values.abs() * (info.eps / 2), torch.full_like(values, info.smallest_normal * info.eps / 2))
