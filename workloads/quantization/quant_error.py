"""Weight-format error on one matrix: what a format stores and what it loses, on synthetic and real weights.

A case quantizes one weight matrix with one format from the registry (reference_impls/kernels/quant/formats.py)
and dequantizes it; the timed call is that round trip. Sources:

  synthetic  a seeded LLM-like matrix (reference_impls/kernels/quant/synthetic_weights.py), `layer` = "OUTxIN",
             with seeded correlated inputs (calibration rows are a second draw from the same distribution)
  minilm     a named nn.Linear of all-MiniLM-L6-v2, inputs captured on the reference text's sentences
  smollm2    a named nn.Linear of SmolLM2-135M-Instruct. Its only local weights are a Q4_1 GGUF: the source
             weights here are those Q4_1 values dequantized to float32 (each block of 32 holds at most 16
             distinct values), and every error is measured against them, not against the original bf16 weights

  correctness (check)  every |w - ŵ| within the format's own per-element bound (0 for lossless formats) and the
                       stored bits agreeing with the payload; formats without a bound (GPTQ, AWQ) are held to
                       DESIGN's rule on what they optimize: layer output error on their calibration rows at most
                       2x that of RTN with the same bits and group
  quality              weight SQNR, relative Frobenius and max-abs error, and layer output error on held-out
                       real inputs (evaluation text; calibration formats saw only the calibration text)
  counted              effective bits per weight (every scale, zero point and metadata bit) and stored bytes
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re

import torch

from harness import metrics
from harness.case import Cost, Param
from harness.registry import Check, Workload, implementation, register_workload
from reference_impls.kernels.quant import synthetic_weights
from reference_impls.models import real_layers, text_corpus

SOURCES = ("synthetic", *real_layers.SOURCES)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
QUANTIZE_FLOPS_PER_WEIGHT = 8  # scale/zero per group amortized, divide, round, clamp, pack; dequantize: sub, mul
SLACK = 1e-6  # relative slack on a format's bound (the bound is computed in float64, the round trip in fp32)

EFFECTIVE_BITS = metrics.declare("quant.effective_bits", "bit", "lower",
                                 "stored bits per weight (codes, scales, zero points, metadata)", deterministic=True)
STORAGE = metrics.declare("quant.storage_bytes", "B", "lower", "bytes the packed weights take", deterministic=True)
SQNR = metrics.declare("quality.weight_sqnr_db", "dB", "higher",
                       "weight SQNR 10·log10(‖W‖²/‖W−Ŵ‖²) vs the source weights (SmolLM2: its dequantized Q4_1)")
REL_FRO = metrics.declare("quality.weight_rel_fro_error", "1", "lower",
                          "‖W−Ŵ‖F / ‖W‖F vs the source weights (SmolLM2: its dequantized Q4_1)")
MAX_ABS = metrics.declare("quality.weight_max_abs_error", "1", "lower",
                          "max |W−Ŵ| in weight units vs the source weights (SmolLM2: its dequantized Q4_1)")
OUTPUT_ERROR = metrics.declare("quality.layer_output_rel_error", "1", "lower",
                               "‖XWᵀ−XŴᵀ‖ / ‖XWᵀ‖ on the layer's held-out real inputs (synthetic: seeded inputs)")


@dataclasses.dataclass(frozen=True)
class QuantizedWeight:
    """One round trip: the stored QTensor, the weight it decodes to, and the stored size it reports."""

    qtensor: object  # reference_impls.kernels.quant.qtensor.QTensor
    dequantized: torch.Tensor  # [out, in], the input dtype
    effective_bits: float
    storage_bytes: float


@register_workload
class QuantError(Workload):
    name = "quant_error"
    family = "quantization"
    description = ("Quantize-dequantize one weight matrix (synthetic LLM-like, all-MiniLM-L6-v2, or SmolLM2-135M's "
                   "dequantized Q4_1) with one registry format: effective bits, SQNR, Frobenius and max-abs error, "
                   "and layer output error on real inputs.")
    sweep_param = "format"
    primary_metric = SQNR.name
    params = (
        Param("format", str, "int4-g128", doc="a registry name (reference_impls.kernels.quant.formats)"),
        Param("source", str, "synthetic", choices=SOURCES),
        Param("layer", str, "1536x576", doc="synthetic: OUTxIN; minilm / smollm2: a module name, e.g. "
              "encoder.layer.0.attention.self.query / model.layers.0.mlp.down_proj"),
        Param("tokens", int, 2048, minimum=1, doc="input rows for the output error, and as many calibration "
              "rows (more than in_features, so GPTQ's Hessian has full rank)"),
        Param("dtype", str, "float32", choices=tuple(DTYPES), doc="the weight is cast to this dtype before "
              "quantizing, and that cast weight is the reference (dfloat11 takes bfloat16 only)"),
    )
    contract_params = {"layer": "96x200", "tokens": 64}

    def version(self) -> str:
        """The source hash joined with the reference text's sha256: a Python whose pydoc topics differ measures
        other text, so its results compare as incomparable rather than as a regression."""
        texts = "".join(text_corpus.reference_text(part).sha256 for part in text_corpus.PARTS)
        return hashlib.sha256((super().version() + texts).encode()).hexdigest()[:12]

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        _format(params["format"])
        out_features, in_features = weight_shape(params)
        rows = params["tokens"]
        if params["source"] == "synthetic":
            weight = synthetic_weights.llm_like_weight(out_features, in_features, seed)
            x = synthetic_weights.correlated_activations(rows, in_features, seed, draw=0)
            calibration = synthetic_weights.correlated_activations(rows, in_features, seed, draw=1)
        else:
            source, layer = params["source"], params["layer"]
            weight = real_layers.layer_weight(source, layer)
            x = real_layers.layer_inputs(source, layer, "evaluation", rows, seed)
            calibration = real_layers.layer_inputs(source, layer, "calibration", rows, seed)
        return {"weight": weight.to(device, DTYPES[params["dtype"]]), "activations": x.to(device),
                "calibration": calibration.to(device)}

    def reference(self, inputs: dict, params: dict) -> dict:
        weight, x = inputs["weight"].double().cpu(), inputs["activations"].double().cpu()
        return {"weight": weight, "activations": x, "output": x @ weight.T, "format": params["format"],
                "calibration": inputs["calibration"].double().cpu()}

    def check(self, output: QuantizedWeight, reference: dict, baseline_error: float | None) -> Check:
        """The format's own promise, whatever the baseline did: within its per-element bound, or (no bound) at
        most 2x RTN's layer output error on the calibration rows. The error figure is ‖W−Ŵ‖/‖W‖ against
        ‖bound‖/‖W‖, or the output errors."""
        problem = _output_problem(output, reference)
        if problem:
            return Check(False, math.inf, 0.0, f"valid round trip; {problem}")
        fmt = _format(reference["format"])
        w, w_hat = reference["weight"], output.dequantized.double().cpu()
        if fmt.error_bound is not None:
            from reference_impls.kernels.quant import formats

            bound = formats.error_bound(w.to(output.dequantized.dtype), output.qtensor).double().cpu()
            within = bool(((w - w_hat).abs() <= bound * (1 + SLACK) + 1e-30).all())
            norm = w.norm().clamp_min(1e-300)
            return Check(within, float((w - w_hat).norm() / norm), float(bound.norm() / norm),
                         f"every |w - ŵ| <= the format's bound (x(1+{SLACK:g})); error ‖W−Ŵ‖/‖W‖ vs ‖bound‖/‖W‖")
        rtn_name = _rtn_analog(fmt.name)
        x = reference["calibration"]
        error = _output_error(x, w, w_hat)
        if rtn_name is None:
            return Check(error < 1.0, error, 1.0, "no bound and no RTN analog: calibration output error < 1")
        from reference_impls.kernels.quant import formats

        rtn = formats.dequantize(formats.quantize(w.to(output.dequantized.dtype), rtn_name)).double()
        tolerance = 2.0 * _output_error(x, w, rtn) + 1e-6
        return Check(error <= tolerance, error, tolerance,
                     f"calibration output error <= 2 x {rtn_name}'s + 1e-6 (the format has no per-element bound)")

    def quality(self, output: QuantizedWeight, reference: dict) -> dict[str, float]:
        """SQNR is absent when the round trip is exact (lossless formats): it is infinite, not a number."""
        w, w_hat = reference["weight"], output.dequantized.double().cpu()
        error = (w - w_hat).norm()
        found = {REL_FRO.name: float(error / w.norm()), MAX_ABS.name: float((w - w_hat).abs().max()),
                 OUTPUT_ERROR.name: float((reference["output"] - reference["activations"] @ w_hat.T).norm()
                                          / reference["output"].norm())}
        if error > 0:
            found[SQNR.name] = float(10 * torch.log10(w.square().sum() / error.square()))
        return found

    def counters(self, output: QuantizedWeight, params: dict) -> dict[str, float]:
        return {EFFECTIVE_BITS.name: output.effective_bits, STORAGE.name: output.storage_bytes}

    def wrong_answers(self, output: QuantizedWeight) -> list[QuantizedWeight]:
        """A NaN in ŵ, ŵ's rows in reverse order, ŵ scaled by 1.5, and a stored size misreported by half."""
        poisoned = output.dequantized.clone()
        poisoned.view(-1)[0] = float("nan")
        return [dataclasses.replace(output, dequantized=poisoned),
                dataclasses.replace(output, dequantized=output.dequantized.flip(0)),
                dataclasses.replace(output, dequantized=output.dequantized * 1.5),
                dataclasses.replace(output, effective_bits=output.effective_bits / 2,
                                    storage_bytes=output.storage_bytes / 2)]

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        if params["source"] != "synthetic":
            missing = real_layers.missing_reason(params["source"])
            if missing:
                return f"{params['source']} is not available: {missing}"
        return None

    def cost(self, params: dict, impl: str) -> Cost:
        """Quantize + dequantize one [out, in] float32 matrix: ~8 FLOPs per weight; calibration formats add
        the Hessian-like statistics of the rows (2·rows·in² FLOPs, GPTQ's X^T X) and a pass over the matrix per
        input column block (2·out·in² for GPTQ's updates) — an estimate, since formats differ. Minimum bytes:
        read W and write Ŵ in the case's dtype, read the float32 calibration rows when used. The packed payload
        (at most the weight's own size for every format here) stays out of the minimum."""
        out_features, in_features = weight_shape(params)
        weights = out_features * in_features
        element = torch.finfo(DTYPES[params["dtype"]]).bits / 8
        flops = float(QUANTIZE_FLOPS_PER_WEIGHT * weights)
        traffic = 2.0 * element * weights
        if _format(params["format"]).needs_calibration:
            flops += 2.0 * params["tokens"] * in_features**2 + 2.0 * out_features * in_features**2
            traffic += 4.0 * params["tokens"] * in_features
        return Cost(flops=flops, bytes={"dram": traffic}, footprint_bytes=traffic + element * weights,
                    dtype=params["dtype"])


def weight_shape(params: dict) -> tuple[int, int]:
    """[out_features, in_features] of the case's matrix; a ValueError says what `layer` may be."""
    if params["source"] != "synthetic":
        return real_layers.layer_shape(params["source"], params["layer"])
    match = re.fullmatch(r"(\d+)x(\d+)", params["layer"])
    if not match or min(int(match.group(1)), int(match.group(2))) < 1:
        raise ValueError(f"a synthetic layer is OUTxIN with positive sizes (e.g. 1536x576), got {params['layer']!r}")
    return int(match.group(1)), int(match.group(2))


def _format(name: str):
    from reference_impls.kernels.quant import formats

    return formats.get_format(name)  # ValueError naming the close matches and every known format


def _rtn_analog(name: str) -> str | None:
    """RTN asym with the format's bits and group (gptq-int4-g128 -> int4-g128-asym), when registered."""
    from reference_impls.kernels.quant import formats

    match = re.search(r"int(\d+)-g(\d+)", name)
    candidate = f"int{match.group(1)}-g{match.group(2)}-asym" if match else None
    return candidate if candidate in formats.format_names() else None


def _output_error(x: torch.Tensor, w: torch.Tensor, w_hat: torch.Tensor) -> float:
    reference = x @ w.T
    return float((reference - x @ w_hat.T).norm() / reference.norm().clamp_min(1e-300))


def _output_problem(output: object, reference: dict) -> str | None:
    if not isinstance(output, QuantizedWeight):
        return f"expected a QuantizedWeight, got {type(output).__name__}"
    w_hat, q = output.dequantized, output.qtensor
    if tuple(w_hat.shape) != tuple(reference["weight"].shape):
        return f"dequantized shape {tuple(w_hat.shape)} != weight shape {tuple(reference['weight'].shape)}"
    if not bool(torch.isfinite(w_hat).all()):
        return "dequantized weight has NaN or inf"
    stored_bits = sum(t.numel() * t.element_size() * 8 for t in q.payload.values())
    if not math.isclose(output.effective_bits, stored_bits / w_hat.numel(), rel_tol=1e-12) or \
            not math.isclose(output.storage_bytes, stored_bits / 8, rel_tol=1e-12):
        return (f"reported {output.effective_bits:g} bits/weight, {output.storage_bytes:g} B; the payload holds "
                f"{stored_bits / w_hat.numel():g} bits/weight, {stored_bits / 8:g} B")
    return None


@implementation("quant_error", "registry", devices=("cpu",), baseline=True)
def registry_round_trip(inputs: dict, params: dict) -> QuantizedWeight:
    """formats.quantize then formats.dequantize (torch, CPU); calibration rows go only to formats needing them."""
    from reference_impls.kernels.quant import formats

    fmt = formats.get_format(params["format"])
    q = formats.quantize(inputs["weight"], params["format"], inputs["calibration"] if fmt.needs_calibration else None)
    return QuantizedWeight(q, formats.dequantize(q), float(q.effective_bits), q.storage_bits / 8)
