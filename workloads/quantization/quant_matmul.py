"""Quantized matmul y = x @ W^T (x [M, K], W [N, K]): weight-only int4 to W8A8, against the dense weight, over M.

At small M a linear layer is bound by reading its weight, so the figure of merit is bytes: a 4-bit weight with a
float16 scale per 128 (4.125 bits) is 3.88x fewer bytes than bf16, and the roofline predicts that much speedup at
M = 1, shrinking as M grows until the matmul turns compute-bound and dequantization only costs.

Every implementation computes the same function, the product with the dequantized weight:
  W = rtn.quantize_codes(w, bits, group, symmetric) dequantized (codes - zero) * scale, scale float16
  bf16            the dense baseline: W held in the activation dtype (bf16 on CUDA; the CPU suite runs float32),
                  so it stands for the unquantized layer at its size and speed (rounding W to the dtype is its
                  only error)
  dequant_matmul  codes (one byte each) dequantized to the activation dtype, then torch's matmul
  triton_int4     packed int4 Triton kernels (reference_impls/kernels/quant/triton_int4.py, v5), CUDA
  triton_int4_v6  v5's tensor-core loop on the same packed weight, its split-K partials summed by a second kernel
                  launched as a programmatic dependent (triton_int4_v6.py, "mma"), CUDA, any M
  triton_int4_fragment  v6's Gluon kernel on the containers reordered into mma fragment order (pack_fragments),
                  CUDA Hopper only, M <= 8 (slower than triton_int4_v6 beyond)
  int8_int_mm     W8A8 dynamic: per-token int8 x per-channel int8 W through torch._int_mm (bits 8, group 0)
  lut_gemv        bit-plane weights and subset-sum activation tables (LUT-GEMM), CPU, 2-4 bits
  ternary_gemv    two packed bit-planes for {-1, 0, +1} (bits 2, symmetric: RTN 2-bit sym codes are ternary), CPU
The inputs are {"x": tensor, "weight": {codes, scale, zero, group_size, dense, and each implementation's packed
format}}: quantized codes hold zeros by nature (a 4-bit sym code is 0 for ~13% of Gaussian weights), so the weight
side is not held to the contract's "not zeros" rule, which x meets. x is drawn on a per-row int8 grid (integers
in [-127, 127] times a power of two, each row reaching 127), so the dynamic per-token activation quantization of
W8A8 is exact here: this workload measures kernels, not activation rounding (the format workloads measure that).

The check compares with the float64 product of x and the dequantized W; the tolerance comes from the dtype and K:
eps(dtype) for the output's rounding (and bf16's rounding of W) plus 8 sqrt(K) eps(float32) for float32
accumulation, so float32 CPU paths are held to ~1e-4 and 16-bit ones to about one ulp of their dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from harness.case import Cost, Param
from harness.registry import Check, Workload, implementation, register_workload, rel_l2_error
from reference_impls.kernels.quant import dequant_matmul as dm
from reference_impls.kernels.quant import int8_matmul as i8
from reference_impls.kernels.quant import lut_gemv as lut
from reference_impls.kernels.quant import ternary_gemv as tern
from reference_impls.kernels.quant import triton_int4 as t4
from reference_impls.kernels.quant import triton_int4_fragment as frag
from reference_impls.kernels.quant import triton_int4_v6 as v6
from workloads.quantization.quant_error import EFFECTIVE_BITS, STORAGE

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
SCALE_BYTES = 2  # float16 scales
WEIGHT_STD = 0.02
IMPL_DEVICES = {"triton_int4": ("cuda",), "int8_int_mm": ("cpu", "cuda"), "lut_gemv": ("cpu",),
                "ternary_gemv": ("cpu",), "triton_int4_v6": ("cuda",), "triton_int4_fragment": ("cuda",)}
# the packed formats built per device (as the impls register); triton_int4_v6 reads triton_int4's packed weight
PACKED = ("triton_int4", "int8_int_mm", "lut_gemv", "ternary_gemv", "triton_int4_fragment")
DEFAULT_K = 65536  # the tolerance's K when a reference lost its `contraction_k` attribute (the largest we run)


def dims(params: dict) -> dict:
    """Sizes and the quantization grid: groups G (group 0: one per row) and group_size."""
    k = params["K"]
    group_size = params["group"] if 0 < params["group"] < k else k
    return {"m": params["M"], "n": params["N"], "k": k, "group_size": group_size, "groups": math.ceil(k / group_size),
            "e": torch.finfo(DTYPES[params["dtype"]]).bits // 8, "bits": params["bits"], "sym": params["symmetric"]}


def scale_zero_bytes(s: dict) -> float:
    return s["n"] * s["groups"] * (SCALE_BYTES + (0 if s["sym"] else 1))


def tolerance(dtype: torch.dtype, k: int) -> float:
    """eps(dtype) (output rounding; for bf16 also W's) + 8 sqrt(K) eps(float32) (accumulation)."""
    return torch.finfo(dtype).eps + 8.0 * math.sqrt(k) * torch.finfo(torch.float32).eps


@register_workload
class QuantMatmul(Workload):
    name = "quant_matmul"
    family = "quantization"
    description = ("y = x @ W^T with W quantized (RTN int2-int8, groups along K): dense bf16 vs dequantize-then-"
                   "matmul vs packed kernels (Triton int4 v5 and v6, W8A8 torch._int_mm, CPU LUT and ternary GEMV), "
                   "over M.")
    sweep_param = "M"
    params = (
        Param("M", int, 1, minimum=1, doc="activation rows (batch x tokens)"),
        Param("N", int, 4096, minimum=1, doc="output features"),
        Param("K", int, 4096, minimum=1, doc="input features (the quantization groups run along K)"),
        Param("group", int, 128, minimum=0, doc="elements per quantization group along K; 0 = one per row"),
        Param("bits", int, 4, choices=(2, 3, 4, 8)),
        Param("symmetric", bool, True, doc="sym: codes in +-(2^(b-1) - 1), no zero point; else a uint8 zero point"),
        Param("dtype", str, "bfloat16", choices=tuple(DTYPES), doc="activation and output dtype"),
    )
    contract_params = {"M": 3, "N": 72, "K": 200, "group": 64, "bits": 4, "dtype": "float32"}

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        from reference_impls.kernels.quant import rtn

        s = dims(params)
        g = torch.Generator(device=device).manual_seed(seed)
        weight = torch.randn(s["n"], s["k"], generator=g, device=device) * WEIGHT_STD
        codes, scale, zero = rtn.quantize_codes(weight, s["bits"], params["group"] or "channel", s["sym"])
        dtype = DTYPES[params["dtype"]]
        q = torch.randint(-127, 128, (s["m"], s["k"]), generator=g, device=device).to(torch.float32)
        q[torch.arange(s["m"], device=device), torch.randint(s["k"], (s["m"],), generator=g, device=device)] = 127.0
        row_scale = 2.0 ** torch.randint(-9, -5, (s["m"], 1), generator=g, device=device).to(torch.float32)
        weight = {"codes": codes, "scale": scale, "zero": zero, "group_size": s["group_size"],
                  "dense": dm.dequantize(codes, scale, zero, s["group_size"], dtype)}
        for impl, build in (("triton_int4", lambda: t4.pack_int4(codes, scale, zero, s["group_size"])),
                            ("int8_int_mm", lambda: i8.prepare_int8_weight(codes, scale)),
                            ("lut_gemv", lambda: lut.pack_bitplanes(codes, scale, zero, s["group_size"], s["bits"])),
                            ("ternary_gemv", lambda: tern.pack_ternary(codes, scale, s["group_size"]))):
            runs_here = torch.device(device).type in IMPL_DEVICES[impl]
            if runs_here and self._format_reason(impl, params) is None:
                weight[impl] = build()
        if "triton_int4" in weight and self.unsupported("triton_int4_fragment", params, device) is None:
            weight["triton_int4_fragment"] = frag.pack_fragments(weight["triton_int4"])  # Hopper, Gluon, M <= 8
        return {"x": (q * row_scale).to(dtype), "weight": weight}

    def input_bytes(self, inputs: dict) -> int:
        """x plus the smallest weight format held: rotation is sized so that even the smallest misses the L2."""
        weight = inputs["weight"]
        held = [weight[name].nbytes for name in PACKED if name in weight]
        smallest = min(held) if held else weight["codes"].numel()
        return int(smallest + inputs["x"].numel() * inputs["x"].element_size())

    def reference(self, inputs: dict, params: dict) -> torch.Tensor:
        w = inputs["weight"]
        ref = dm.reference_matmul(inputs["x"], w["codes"], w["scale"], w["zero"], w["group_size"])
        ref.contraction_k = params["K"]  # read by check(): the tolerance depends on K
        return ref

    def check(self, output: torch.Tensor, reference: torch.Tensor, baseline_error: float | None) -> Check:
        k = getattr(reference, "contraction_k", DEFAULT_K)
        limit = tolerance(output.dtype, k)
        error = rel_l2_error(output, reference)
        return Check(error <= limit, error, limit, f"error <= eps({output.dtype}) + 8 sqrt(K={k}) eps(float32)")

    def wrong_answers(self, output: torch.Tensor) -> list[torch.Tensor]:
        """Scaled by 1.01, columns reversed (rows may be one), one NaN."""
        poisoned = output.clone()
        poisoned.view(-1)[0] = float("nan")
        return [output * 1.01, output.flip(-1), poisoned]

    def counters(self, output: torch.Tensor, params: dict) -> dict[str, float]:
        s = dims(params)
        weight_bytes = s["n"] * s["k"] * s["bits"] / 8 + scale_zero_bytes(s)
        return {EFFECTIVE_BITS.name: 8.0 * weight_bytes / (s["n"] * s["k"]), STORAGE.name: weight_bytes}

    def cost(self, params: dict, impl: str) -> Cost:
        """FLOPs 2MNK for every implementation. Minimum bytes: what the implementation must read (its weight
        format, scales, zero points, x) and write (y); traffic adds what it materializes (counted from the code)."""
        s = dims(params)
        io = (s["m"] * s["k"] + s["m"] * s["n"]) * s["e"]
        weight, traffic, launches = _weight_traffic(impl, params, s)
        dtype = "int8" if impl == "int8_int_mm" else ("float32" if impl in ("lut_gemv", "ternary_gemv")
                                                     else params["dtype"])
        return Cost(2.0 * s["m"] * s["n"] * s["k"], {"dram": weight + io}, weight + io, dtype=dtype,
                    traffic_bytes={"dram": weight + io + traffic}, launches=launches)

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        reason = self._format_reason(impl, params)
        if reason is None and impl == "int8_int_mm":
            reason = i8.int_mm_unavailable(device)
        if reason is None and impl.startswith("triton_int4") and params["dtype"] not in ("bfloat16", "float16"):
            reason = f"{impl} takes bfloat16 or float16 activations, not {params['dtype']}"
        if reason is None and impl == "triton_int4_fragment":
            if params["M"] > frag.MAX_M:
                reason = (f"triton_int4_fragment is for M <= {frag.MAX_M} (x^T spans one n8 mma tile; beyond, "
                          f"triton_int4_v6 is faster); got M = {params['M']}")
            else:
                reason = frag.fragment_unavailable(device)
        return reason

    @staticmethod
    def _format_reason(impl: str, params: dict) -> str | None:
        """Why `impl`'s weight format cannot hold these params (None: it can)."""
        s = dims(params)
        if impl.startswith("triton_int4"):
            if s["bits"] != 4:
                return f"{impl} packs 4-bit codes, not {s['bits']}-bit"
            try:
                t4.check_group_size(s["group_size"], s["k"])
            except ValueError as exc:
                return str(exc)
            if impl == "triton_int4_fragment" and s["groups"] > 1 and s["group_size"] % t4.BLOCK_K:
                return (f"triton_int4_fragment needs groups of a multiple of {t4.BLOCK_K} (or one per row), got "
                        f"{s['group_size']}")
        if impl == "int8_int_mm" and (s["bits"] != 8 or s["groups"] != 1 or not s["sym"]):
            return "int8_int_mm needs per-channel symmetric int8 weights (bits=8, group=0, symmetric)"
        if impl == "lut_gemv":
            if s["bits"] not in (2, 3, 4):
                return f"lut_gemv covers 2-, 3- and 4-bit weights, not {s['bits']}-bit"
            if s["groups"] > 1 and s["group_size"] % 8:
                return f"lut_gemv needs groups of a multiple of 8 elements, got {s['group_size']}"
        if impl == "ternary_gemv":
            if s["bits"] != 2 or not s["sym"]:
                return "ternary_gemv needs ternary weights: bits=2, symmetric (codes in {-1, 0, 1})"
            if s["groups"] > 1 and s["group_size"] % 8:
                return f"ternary_gemv needs groups of a multiple of 8 elements, got {s['group_size']}"
        return None


def _weight_traffic(impl: str, params: dict, s: dict) -> tuple[float, float, int]:
    """(weight bytes read at minimum, extra bytes materialized, launches) of one call, counted from the code."""
    n, k, m, e = s["n"], s["k"], s["m"], s["e"]
    sz = scale_zero_bytes(s)
    nk = float(n * k)
    if impl == "bf16":
        return nk * e, 0.0, 1
    if impl == "dequant_matmul":  # rtn.dequantize_codes in float32, expanded scale (and zero), cast, matmul
        # codes -> float32 (write), scale expanded (write), multiply (2 reads, write), zero likewise when asym,
        # cast to the dtype (read, write) unless float32, the matmul's read of W
        passes = 4.0 + 4 + 12 + (0 if s["sym"] else 4 + 12) + (4 + e if e != 4 else 0) + e
        return nk + sz, nk * passes, 5 if s["sym"] else 7
    if impl == "triton_int4":
        kernel = t4.choose_kernel(m)
        plan = t4.launch_plan(kernel, m, n, k, t4.default_config(kernel, m))
        partials = 2.0 * 4 * m * n * plan["splits"] if plan["splits"] > 1 else 0.0
        return n * plan["blocks"] * t4.BLOCK_K / 2 + sz, partials, 1
    if impl in ("triton_int4_v6", "triton_int4_fragment"):
        # the same bytes as triton_int4; the split-K partials (float32 [splits, M, N]) are written by the first
        # kernel and read by the second, a separate launch (v5: one launch, its last split reads them). The
        # fragment kernel reads whole row tiles: containers of rows past N (packing pads N) are traffic
        kernel = "fragment" if impl == "triton_int4_fragment" else "mma"
        config = v6.default_config(kernel, m)
        plan = v6.launch_plan(kernel, m, n, k, config)
        column_bytes = plan["blocks"] * t4.BLOCK_K / 2  # containers of one output feature
        split = plan["splits"] > 1
        partials = 2.0 * 4 * m * n * plan["splits"] if split else 0.0
        padded = plan["n_tiles"] * config["block_n"] - n if kernel == "fragment" else 0
        return n * column_bytes + sz, partials + padded * column_bytes, 2 if split else 1
    if impl == "int8_int_mm":  # per-token quantization (6 passes over x), _int_mm's int32 out, two scalings
        x_passes = m * k * (e + 4 + 4 + 4 + 4 + 4 + 4 + 1)
        out_passes = m * n * (4 + 4 + 4 + 4 + 4 + 4 + 4)
        return nk + 4.0 * n, x_passes + out_passes, 10
    planes = s["bits"] if impl == "lut_gemv" else 2
    chunks = math.ceil(k / 8)
    # per activation row: int64 indices (write, read), the table entry each gathers, the gathered values (write,
    # read), the plane-combined sums (write, read), and the 256-entry tables (write, read)
    per_row = planes * n * chunks * (8 + 8 + 4 + 4 + 4) + n * chunks * 8 + 256 * chunks * 4 * 2
    return planes * n * chunks + sz, m * per_row, m * (6 * math.ceil(n / lut.ROW_BLOCK) + 8)


@implementation("quant_matmul", "bf16", baseline=True)
def bf16(inputs: dict, params: dict) -> torch.Tensor:
    """The dense weight in the activation dtype (the unquantized layer's size and speed), torch's matmul."""
    return F.linear(inputs["x"], inputs["weight"]["dense"])


@implementation("quant_matmul", "dequant_matmul")
def dequant_matmul(inputs: dict, params: dict) -> torch.Tensor:
    """Codes (a byte each) dequantized to the activation dtype, then torch's matmul."""
    w = inputs["weight"]
    return dm.dequant_matmul(inputs["x"], w["codes"], w["scale"], w["zero"], w["group_size"])


@implementation("quant_matmul", "triton_int4", devices=IMPL_DEVICES["triton_int4"])
def triton_int4(inputs: dict, params: dict) -> torch.Tensor:
    """Packed int4 (W4A16) Triton kernel, tensor cores, split K for small M."""
    return t4.int4_matmul(inputs["x"], inputs["weight"]["triton_int4"])


@implementation("quant_matmul", "triton_int4_v6", devices=IMPL_DEVICES["triton_int4_v6"])
def triton_int4_v6(inputs: dict, params: dict) -> torch.Tensor:
    """triton_int4's packed weight and tensor-core loop; split-K partials summed by a second, dependent launch."""
    return v6.int4_matmul_v6(inputs["x"], inputs["weight"]["triton_int4"], "mma")


@implementation("quant_matmul", "triton_int4_fragment", devices=IMPL_DEVICES["triton_int4_fragment"])
def triton_int4_fragment(inputs: dict, params: dict) -> torch.Tensor:
    """Gluon: containers in mma fragment order loaded straight into A-operand registers (Hopper, M <= 8)."""
    return v6.int4_matmul_v6(inputs["x"], inputs["weight"]["triton_int4_fragment"], "fragment")


@implementation("quant_matmul", "int8_int_mm", devices=IMPL_DEVICES["int8_int_mm"])
def int8_int_mm(inputs: dict, params: dict) -> torch.Tensor:
    """W8A8 dynamic: per-token int8 activations x per-channel int8 weight through torch._int_mm."""
    return i8.int8_linear(inputs["x"], inputs["weight"]["int8_int_mm"])


@implementation("quant_matmul", "lut_gemv", devices=IMPL_DEVICES["lut_gemv"])
def lut_gemv(inputs: dict, params: dict) -> torch.Tensor:
    """Bit-plane weights and 256-entry subset-sum tables per 8 activations (LUT-GEMM), gathers in torch."""
    return lut.lut_gemv(inputs["x"], inputs["weight"]["lut_gemv"])


@implementation("quant_matmul", "ternary_gemv", devices=IMPL_DEVICES["ternary_gemv"])
def ternary_gemv(inputs: dict, params: dict) -> torch.Tensor:
    """Ternary weights as nonzero and sign bit-planes; two table lookups per 8 weights."""
    return tern.ternary_gemv(inputs["x"], inputs["weight"]["ternary_gemv"])
