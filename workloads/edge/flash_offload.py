"""flash_offload: an FFN read from a file on disk per neuron, under four loading policies (LLM in a flash, P006).

The weights live only in a real file (reference_impls.edge.flash_offload); the DRAM buffer holds
`budget_fraction` of the file (0.5: the model is twice the DRAM budget). A seeded activation trace (sparsity,
temporal correlation) says which neurons fire per token. Policies: naive, windowing (keep the last `window`
tokens' neurons), bundling (up row + down column contiguous, one read) and both. Counted: bytes and reads per
token, DRAM-resident bytes; measured: latency (= the whole sequence; ms/token = latency / tokens) and the time
inside preadv; modeled: ms/token on edge profiles from flash latency + bandwidth (flash_model). The page cache
is bypassed with O_DIRECT (cache_mode=direct) or dropped before every token with posix_fadvise (fadvise).
"""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.case import Cost, Param
from harness.metrics import declare
from harness.registry import Check, Workload, implementation, register_workload, rel_l2_error
from reference_impls.edge import flash_model
from reference_impls.edge.flash_offload import (
    CACHE_MODES,
    LAYOUTS,
    POLICIES,
    FlashFFN,
    FlashStats,
    dense_reference,
    direct_io_problem,
    write_ffn_file,
)
from reference_impls.edge.sparsity_trace import activation_trace

MODELED_DEVICES = {"pi5": "raspberry-pi-5-8gb", "orin_nano": "jetson-orin-nano-8gb-25w",
                   "phone": "snapdragon-8-gen3-phone"}
_C = "counted"
METRICS = {name: declare(name, unit, direction, label, exact) for name, unit, direction, label, exact in (
    ("flash.bytes_read_per_token", "B", "lower", f"bytes read from the file per token ({_C})", True),
    ("flash.reads_per_token", "reads", "lower", f"preadv calls per token ({_C})", True),
    ("flash.dram_resident_bytes", "B", "lower", f"peak neuron bytes resident in DRAM ({_C})", True),
    ("flash.dram_budget_bytes", "B", "lower", "DRAM slot buffer allocated (the budget)", True),
    ("flash.model_bytes", "B", "higher", "FFN file size", True),
    ("flash.model_over_dram", "x", "higher", "file size / DRAM budget", True),
    ("flash.io_ms_per_token", "ms", "lower", "time inside preadv per token (measured in the call)", False),
    *((f"flash.modeled_ms_per_token.{key}", "ms", "lower", f"modeled ms/token on {name} (flash latency + "
       "bandwidth, then compute roofline)", True) for key, name in MODELED_DEVICES.items()),
)}


@dataclass(frozen=True)
class Trace:
    """The active-neuron mask [tokens, d_ff]; kept out of the tensor inputs because it is mostly zeros."""

    mask: torch.Tensor


@dataclass(frozen=True)
class FlashResult:
    y: torch.Tensor
    stats: FlashStats


def _files(params: dict, seed: int, up: torch.Tensor, down_t: torch.Tensor) -> dict[str, Path]:
    """Both layouts' files in a cache folder keyed by shape and seed, written once (fsynced)."""
    key = hashlib.sha256(f"{params['d_model']}x{params['d_ff']}:{seed}".encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "membench-flash" / key
    folder.mkdir(parents=True, exist_ok=True)
    paths = {layout: folder / f"{layout}.bin" for layout in LAYOUTS}
    size = 2 * params["d_ff"] * params["d_model"] * 4
    for layout, path in paths.items():
        if not path.is_file() or path.stat().st_size != size:
            write_ffn_file(path, up, down_t, layout)
    return paths


@register_workload
class FlashOffload(Workload):
    name = "flash_offload"
    family = "edge"
    description = ("LLM in a flash: an FFN read per neuron from a file with os.preadv under a DRAM budget; naive, "
                   "windowing, row-column bundling and both. Bytes/reads per token, resident bytes, ms/token "
                   "measured here (page cache bypassed) and modeled on edge flash.")
    sweep_param = "sparsity"
    primary_metric = "latency_s"
    params = (
        Param("d_model", int, 1024, minimum=1),
        Param("d_ff", int, 8192, minimum=1),
        Param("tokens", int, 32, minimum=1),
        Param("sparsity", float, 0.9, minimum=0.0, doc="fraction of neurons inactive per token (< 1)"),
        Param("correlation", float, 0.8, minimum=0.0, doc="lag-1 autocorrelation of each neuron's activity (< 1)"),
        Param("window", int, 4, minimum=1, doc="windowing: tokens whose neurons stay resident"),
        Param("budget_fraction", float, 0.5, minimum=1e-6, doc="DRAM budget as a fraction of the file"),
        Param("cache_mode", str, "direct", choices=CACHE_MODES, doc="how the page cache is kept out of the reads"),
    )
    contract_params = {"d_ff": 512, "tokens": 6, "sparsity": 0.8}

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        generator = torch.Generator().manual_seed(seed)
        d, d_ff = params["d_model"], params["d_ff"]
        up = torch.randn(d_ff, d, generator=generator) / d**0.5
        down_t = torch.randn(d_ff, d, generator=generator) / d_ff**0.5
        x = torch.randn(params["tokens"], d, generator=generator)
        mask = activation_trace(params["tokens"], d_ff, params["sparsity"], params["correlation"], seed)
        return {"x": x, "up": up, "down_t": down_t, "trace": Trace(mask), "files": _files(params, seed, up, down_t)}

    def reference(self, inputs: dict, params: dict) -> torch.Tensor:
        return dense_reference(inputs["x"], inputs["up"], inputs["down_t"], inputs["trace"].mask)

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        if not 0 <= params["sparsity"] < 1 or not 0 <= params["correlation"] < 1:
            return "sparsity and correlation must be below 1"
        if params["cache_mode"] == "direct":
            if (params["d_model"] * 4) % 4096:
                return "cache_mode=direct needs d_model a multiple of 1024 (4 KiB rows)"
            return direct_io_problem(tempfile.gettempdir())
        return None

    def cost(self, params: dict, impl: str) -> Cost:
        """Expected over the trace model: active = d_ff·p per token; windowing loads a neuron only when it was
        idle the previous `window` tokens: p·(1-stay)·(1-enter)^(window-1) (stationary, reversible chain)."""
        d, d_ff, tokens = params["d_model"], params["d_ff"], params["tokens"]
        p, rho, window = 1 - params["sparsity"], params["correlation"], params["window"]
        stay, enter = p + rho * (1 - p), p * (1 - rho)
        keep, _ = POLICIES[impl]
        loaded = p * (1 - stay) * (1 - enter) ** (window - 1) if keep else p
        neuron_bytes = 2 * d * 4
        active = tokens * d_ff * p
        # the loaded rows come from the file (the "ssd" tier: this machine's calibrated file-read bandwidth), the
        # active rows are then read from DRAM by the FFN itself
        return Cost(flops=4 * d * active, bytes={"ssd": tokens * d_ff * loaded * neuron_bytes,
                                                 "dram": active * neuron_bytes},
                    footprint_bytes=params["budget_fraction"] * d_ff * neuron_bytes, dtype="float32")

    def check(self, output: FlashResult, reference: torch.Tensor, baseline_error: float | None) -> Check:
        return super().check(output.y, reference, baseline_error)

    def quality(self, output: FlashResult, reference: torch.Tensor) -> dict[str, float]:
        return {"quality.rel_l2_error": rel_l2_error(output.y, reference)}

    def counters(self, output: FlashResult, params: dict) -> dict[str, float]:
        s = output.stats
        active_per_token = s.active_neurons / s.tokens
        touched = active_per_token * 2 * params["d_model"] * 4
        counts = {"flash.bytes_read_per_token": s.bytes_per_token, "flash.reads_per_token": s.reads_per_token,
                  "flash.dram_resident_bytes": float(s.peak_resident_bytes),
                  "flash.dram_budget_bytes": float(s.buffer_bytes), "flash.model_bytes": float(s.model_bytes),
                  "flash.model_over_dram": s.model_bytes / s.buffer_bytes,
                  "flash.io_ms_per_token": 1e3 * s.io_s / s.tokens}
        for key, device in MODELED_DEVICES.items():
            seconds = flash_model.seconds_per_token(device, s.reads_per_token, s.bytes_per_token,
                                                    4 * params["d_model"] * active_per_token, touched)
            counts[f"flash.modeled_ms_per_token.{key}"] = 1e3 * seconds
        return counts

    def wrong_answers(self, output: FlashResult) -> list[FlashResult]:
        return [dataclasses.replace(output, y=y) for y in super().wrong_answers(output.y)]

    def input_bytes(self, inputs: dict) -> int:
        return super().input_bytes({k: v for k, v in inputs.items() if k in ("x", "up", "down_t")})


def _serve(policy: str, inputs: dict, params: dict) -> FlashResult:
    layout = POLICIES[policy][1]
    path = inputs["files"][layout]
    budget = int(params["budget_fraction"] * path.stat().st_size)
    ffn = FlashFFN(path, params["d_model"], params["d_ff"], layout, budget, params["window"], params["cache_mode"])
    try:
        y, stats = ffn.run(inputs["x"], inputs["trace"].mask, policy)
    finally:
        ffn.close()
    return FlashResult(y, stats)


@implementation("flash_offload", "naive", devices=("cpu",), baseline=True)
def naive(inputs: dict, params: dict) -> FlashResult:
    """Every token reads all its active neurons (up rows and down columns: two reads each), keeps nothing."""
    return _serve("naive", inputs, params)


@implementation("flash_offload", "windowing", devices=("cpu",))
def windowing(inputs: dict, params: dict) -> FlashResult:
    """Neurons active in the last `window` tokens stay resident; only newly active ones are read."""
    return _serve("windowing", inputs, params)


@implementation("flash_offload", "bundling", devices=("cpu",))
def bundling(inputs: dict, params: dict) -> FlashResult:
    """Naive loading from the bundled layout: a neuron's up row and down column in one read."""
    return _serve("bundling", inputs, params)


@implementation("flash_offload", "both", devices=("cpu",))
def both(inputs: dict, params: dict) -> FlashResult:
    """Windowing on the bundled layout."""
    return _serve("both", inputs, params)
