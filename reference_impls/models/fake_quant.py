"""Fake quantization of a model: every nn.Linear weight replaced by dequantize(quantize(weight)).

WHY: the fidelity of a weight format is what the model does with the weights a format would store. Replacing
each weight by its quantize-dequantize round trip runs the model on exactly those values (in float32, so the
memory is saved only on paper; the per-layer bytes say what a packed model would hold). Formats that need
calibration (GPTQ, AWQ) get each layer's real inputs, captured by forward hooks on a calibration text in one
pass of the unquantized model (not the sequential variant that re-captures behind already-quantized layers).

`lm_head` is skipped by default: SmolLM2 ties it to the input embeddings, and quantization recipes (GPTQ,
AWQ, llama.cpp's Q4 types) commonly keep the output head at higher precision.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

DEFAULT_SKIP = ("lm_head",)


@dataclass(frozen=True)
class LayerQuantization:
    """What one linear layer's weight became: its format and the storage a packed copy takes."""

    name: str
    shape: tuple[int, int]  # [out_features, in_features]
    format: str
    effective_bits: float  # stored bits per weight, every scale and zero point counted
    storage_bytes: float  # what the QTensor's payload holds
    weight_square_sum: float = 0.0  # Σ w² of the original weight (float64)
    error_square_sum: float = 0.0  # Σ (w - ŵ)²: with the above, the layer's SQNR


@dataclass(frozen=True)
class FakeQuantResult:
    model: nn.Module
    layers: tuple[LayerQuantization, ...]

    @property
    def weights(self) -> int:
        return sum(math.prod(layer.shape) for layer in self.layers)

    @property
    def storage_bytes(self) -> float:
        return float(sum(layer.storage_bytes for layer in self.layers))

    @property
    def effective_bits(self) -> float:
        """Bits per weight over all quantized layers (weighted by layer size)."""
        return 8.0 * self.storage_bytes / self.weights

    @property
    def weight_sqnr_db(self) -> float:
        return weight_sqnr_db(self.layers)


def weight_sqnr_db(layers: Iterable[LayerQuantization]) -> float:
    """10·log10(Σ‖W‖² / Σ‖W − Ŵ‖²) over the layers; inf when nothing was lost (a lossless format)."""
    layers = list(layers)
    error = sum(layer.error_square_sum for layer in layers)
    signal = sum(layer.weight_square_sum for layer in layers)
    return math.inf if error == 0 else 10.0 * math.log10(signal / error)


def linear_layers(model: nn.Module, skip: Iterable[str] = DEFAULT_SKIP) -> list[tuple[str, nn.Linear]]:
    """Named nn.Linear modules in definition order, minus those whose name ends with an entry of `skip`."""
    skip = tuple(skip)
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not any(name == s or name.endswith("." + s) for s in skip)]


class _BatchDone(Exception):
    """Raised by a hook once every requested layer has seen this batch: the rest of the forward is not needed."""


def capture_linear_inputs(model: nn.Module, names: Iterable[str], batches: Iterable[Mapping[str, Any]],
                          max_rows: int | None = None) -> dict[str, torch.Tensor]:
    """Each named layer's input rows [tokens, in_features] (float32, detached) over forward calls model(**batch).

    Padding positions (attention_mask == 0 in a batch) are dropped. Each forward stops as soon as every named
    layer has seen its batch (a layer near the input costs almost nothing), and with `max_rows` batches stop
    once every layer has that many rows (each keeps its first max_rows). Layers sharing one input (q/k/v)
    share one tensor.
    """
    modules = dict(model.named_modules())
    names = list(dict.fromkeys(names))
    missing = [n for n in names if not isinstance(modules.get(n), nn.Linear)]
    if missing:
        examples = [n for n, _ in linear_layers(model)][:4]
        raise ValueError(f"not nn.Linear layers of this model: {missing[:5]}; e.g. {examples}")
    rows: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    counts = dict.fromkeys(names, 0)
    state: dict[str, Any] = {"mask": None, "pending": set()}

    def hook_for(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            x, mask = args[0].detach(), state["mask"]
            if mask is not None and x.dim() == 3 and x.shape[:2] == mask.shape:
                x = x[mask.bool()]  # [real tokens, in]
            x = x.reshape(-1, x.shape[-1]).float()
            if max_rows is not None:
                x = x[: max(max_rows - counts[name], 0)]
            if x.shape[0]:
                rows[name].append(x)
                counts[name] += x.shape[0]
            state["pending"].discard(name)
            if not state["pending"]:
                raise _BatchDone

        return hook

    handles = [modules[n].register_forward_pre_hook(hook_for(n)) for n in names]
    try:
        with torch.inference_mode():
            for batch in batches:
                state["mask"], state["pending"] = batch.get("attention_mask"), set(names)
                try:
                    model(**batch)
                except _BatchDone:
                    pass
                if max_rows is not None and all(c >= max_rows for c in counts.values()):
                    break
    finally:
        for handle in handles:
            handle.remove()
    out, seen = {}, {}
    for name in names:
        if not rows[name]:
            raise ValueError(f"layer {name!r} saw no input rows: is it on the path of the forward?")
        key = tuple(id(t) for t in rows[name])  # q, k, v receive the same tensors
        out[name] = seen.setdefault(key, torch.cat(rows[name]))
    return out


def quantized_weight(weight: torch.Tensor, format_name: str,
                     calibration: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """(dequantize(quantize(weight)), stored bits) through the formats registry."""
    from reference_impls.kernels.quant import formats

    fmt = formats.get_format(format_name)
    if fmt.needs_calibration and calibration is None:
        raise ValueError(f"format {format_name!r} needs calibration activations [tokens, in_features]")
    q = formats.quantize(weight, format_name, calibration if fmt.needs_calibration else None)
    return formats.dequantize(q), q.storage_bits


def needs_calibration(format_name: str) -> bool:
    from reference_impls.kernels.quant import formats

    return bool(formats.get_format(format_name).needs_calibration)


def fake_quantize_model(model: nn.Module, format_name: str, calibration: Mapping[str, torch.Tensor] | None = None,
                        inplace: bool = False, skip: Iterable[str] = DEFAULT_SKIP,
                        weight_dtype: torch.dtype | None = None) -> FakeQuantResult:
    """Replace every nn.Linear weight (minus `skip`) by its round trip through `format_name`.

    `calibration` maps layer names to their input rows (from `capture_linear_inputs`), required when the format
    needs calibration. `weight_dtype` casts each weight before quantizing (dfloat11 takes bfloat16 only); the
    round trip is cast back to the model's dtype. Without `inplace` a deep copy is changed, not the model.
    """
    target = model if inplace else copy.deepcopy(model)
    layers = []
    for name, module in linear_layers(target, skip):
        activations = None
        if calibration is not None:
            activations = calibration.get(name)
            if activations is None and needs_calibration(format_name):
                raise ValueError(f"format {format_name!r} needs calibration rows for layer {name!r}; none given")
        with torch.no_grad():
            source = module.weight.detach()
            weight, stored_bits = quantized_weight(source if weight_dtype is None else source.to(weight_dtype),
                                                   format_name, activations)
            module.weight = nn.Parameter(weight.to(module.weight.dtype), requires_grad=False)
            # Errors against the model's own weights (before any weight_dtype cast); squares summed in float64.
            original = source.float()
            error = float((original - module.weight.float()).square().sum(dtype=torch.float64))
        out_features, in_features = module.weight.shape
        layers.append(LayerQuantization(name, (out_features, in_features), format_name,
                                        stored_bits / (out_features * in_features), stored_bits / 8,
                                        float(original.square().sum(dtype=torch.float64)), error))
    if not layers:
        raise ValueError("the model has no nn.Linear layer to quantize")
    return FakeQuantResult(target, tuple(layers))


@contextlib.contextmanager
def fake_quantized(model: nn.Module, format_name: str, calibration: Mapping[str, torch.Tensor] | None = None,
                   skip: Iterable[str] = DEFAULT_SKIP, weight_dtype: torch.dtype | None = None
                   ) -> Iterator[FakeQuantResult]:
    """Quantize `model` in place for the `with` block and put every original weight back afterwards (no copy
    of the model: only the replaced weights are held twice)."""
    originals = [(module, module.weight) for _, module in linear_layers(model, skip)]
    try:
        yield fake_quantize_model(model, format_name, calibration, inplace=True, skip=skip, weight_dtype=weight_dtype)
    finally:
        for module, weight in originals:
            module.weight = weight


def as_loaded_layers(model: nn.Module, skip: Iterable[str] = DEFAULT_SKIP) -> tuple[LayerQuantization, ...]:
    """The same per-layer record for the unquantized model: its dtype's bits per weight (format "fp32" etc.)."""
    layers = []
    for name, module in linear_layers(model, skip):
        element = module.weight.element_size()
        out_features, in_features = module.weight.shape
        layers.append(LayerQuantization(name, (out_features, in_features), f"fp{8 * element}", 8.0 * element,
                                        float(element * out_features * in_features)))
    return tuple(layers)
