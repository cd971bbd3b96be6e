"""patch_inference: a MobileNetV2-like initial stage run layer by layer vs patch by patch (MCUNetV2, P027).

Random weights (reference_impls.edge.patch_inference); outputs must equal the float64 layer-by-layer reference.
Counted: peak live activation memory, tracked tensor by tensor as the run creates and frees them, in int8 bytes
(one byte per element, as on a microcontroller) — the input image excluded (it is the given input buffer).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from harness.case import Cost, Param
from harness.metrics import declare
from harness.registry import Check, Workload, implementation, register_workload, rel_l2_error
from reference_impls.edge import patch_inference as pi

METRICS = {name: declare(name, unit, "lower", label, True) for name, unit, label in (
    ("edge_patch.peak_activation_bytes_int8", "B", "peak live activations, 1 byte per element (counted, tracked)"),
    ("edge_patch.analytic_peak_bytes_int8", "B", "peak live activations, 1 byte per element (analytic)"),
    ("edge_patch.mcunet_peak_bytes_int8", "B", "layer-by-layer peak in MCUNet's convention (analytic)"),
    ("edge_patch.flops_ratio", "x", "FLOPs / layer-by-layer FLOPs (halo recomputation)"),
)}


@dataclass(frozen=True)
class PatchResult:
    y: torch.Tensor
    peak_elements: int  # tracked
    analytic_peak: int  # from the shapes
    patched: bool


def _stage(params: dict) -> list[pi.Block]:
    return pi.mobilenet_v2_stage(params["blocks"], params["width"])


@register_workload
class PatchInference(Workload):
    name = "patch_inference"
    family = "edge"
    description = ("MCUNetV2: the memory-heavy first stage of a MobileNetV2-like CNN layer by layer vs patch by "
                   "patch (halo recomputed); identical outputs; peak live activation bytes (int8) counted.")
    sweep_param = "patches"
    primary_metric = "edge_patch.peak_activation_bytes_int8"
    params = (
        Param("resolution", int, 224, minimum=8),
        Param("blocks", int, 4, minimum=0, doc="inverted-residual blocks after the stem (<= 6)"),
        Param("width", float, 1.0, minimum=0.1),
        Param("patches", int, 3, minimum=1, doc="tiles per side of the stage output"),
    )
    contract_params = {"resolution": 40, "blocks": 3, "patches": 2}

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(1, 3, params["resolution"], params["resolution"], generator=g)
        return {"x": x, "weights": pi.init_weights(_stage(params), seed + 1)}

    def reference(self, inputs: dict, params: dict) -> torch.Tensor:
        weights64 = [{k: v.double() for k, v in w.items()} for w in inputs["weights"]]
        return pi.run_layers(inputs["x"].double(), _stage(params), weights64, pi.LiveTracker())

    def cost(self, params: dict, impl: str) -> Cost:
        """FLOPs with the halo recomputed (patches) or not; one write + read of every activation (float32)."""
        stage, size, elements = _stage(params), params["resolution"], 0.0
        for b in stage:
            out = pi.output_size([b], size)
            elements += 2 * (b.hidden * size * size + b.cout * out * out)
            size = out
        flops = pi.stage_flops(stage, params["resolution"], params["patches"] if impl == "patches" else None)
        return Cost(flops=flops, bytes={"dram": 4 * elements}, dtype="float32", launches=4 * len(stage))

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        if params["blocks"] > len(pi.MBV2_BLOCKS):
            return f"blocks must be <= {len(pi.MBV2_BLOCKS)}"
        out = pi.output_size(_stage(params), params["resolution"])
        return f"patches must be <= the stage output size {out}" if params["patches"] > out else None

    def check(self, output: PatchResult, reference: torch.Tensor, baseline_error: float | None) -> Check:
        """The output by the 2x rule, and the tracked peak equal to the analytic one from the shapes."""
        verdict = super().check(output.y, reference, baseline_error)
        exact = output.peak_elements == output.analytic_peak
        return dataclasses.replace(verdict, passed=verdict.passed and exact,
                                   error=verdict.error if exact else float("inf"),
                                   rule=verdict.rule + "; tracked peak == analytic peak")

    def quality(self, output: PatchResult, reference: torch.Tensor) -> dict[str, float]:
        return {"quality.rel_l2_error": rel_l2_error(output.y, reference)}

    def counters(self, output: PatchResult, params: dict) -> dict[str, float]:
        stage, size = _stage(params), params["resolution"]
        patches = params["patches"] if output.patched else None
        return {"edge_patch.peak_activation_bytes_int8": float(output.peak_elements),
                "edge_patch.analytic_peak_bytes_int8": float(output.analytic_peak),
                "edge_patch.mcunet_peak_bytes_int8": float(pi.mcunet_peak(stage, size)),
                "edge_patch.flops_ratio": pi.stage_flops(stage, size, patches) / pi.stage_flops(stage, size)}

    def wrong_answers(self, output: PatchResult) -> list[PatchResult]:
        return [*(dataclasses.replace(output, y=y) for y in super().wrong_answers(output.y)),
                dataclasses.replace(output, peak_elements=output.peak_elements - 1)]

    def input_bytes(self, inputs: dict) -> int:
        return super().input_bytes({"x": inputs["x"]})


@implementation("patch_inference", "layers", devices=("cpu",), baseline=True)
def layers(inputs: dict, params: dict) -> PatchResult:
    """Layer by layer over the whole feature map."""
    live = pi.LiveTracker()
    y = pi.run_layers(inputs["x"], _stage(params), inputs["weights"], live)
    return PatchResult(y, live.peak, pi.analytic_peak(_stage(params), params["resolution"]), False)


@implementation("patch_inference", "patches", devices=("cpu",))
def patches(inputs: dict, params: dict) -> PatchResult:
    """patches x patches output tiles, each from its own input region with the receptive-field halo recomputed."""
    live = pi.LiveTracker()
    y = pi.run_patches(inputs["x"], _stage(params), inputs["weights"], params["patches"], live)
    return PatchResult(y, live.peak, pi.analytic_peak(_stage(params), params["resolution"], params["patches"]), True)
