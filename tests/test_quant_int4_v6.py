"""triton_int4_v6 (two-pass split-K int4 matmul, Gluon fragment kernel) against the float64 product of the
dequantized weight.

On CPU the mma kernel runs in Triton's interpreter (conftest sets TRITON_INTERPRET=1) at small, ragged sizes; the
interpreter rounds float32 -> bf16 by truncation, so 16-bit results are held to 3x the error of rounding the exact
answer to the dtype. The TMA path runs in the interpreter too (host-side descriptors are emulated there); `pdl`
(griddepcontrol) is a no-op without a GPU. Gluon has no interpreter: on CPU the fragment order (pack_fragments) is
checked element by element and the kernel's input checks; its arithmetic is checked against float64 on the H100 by
scripts/bench_int4_v6.py (24 cases; results/published/h100-quant-matmul/v6/v6_log.txt).
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reference_impls.kernels.quant import rtn
from reference_impls.kernels.quant import triton_int4 as t4
from reference_impls.kernels.quant import triton_int4_fragment as frag

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_triton = pytest.mark.skipif(not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
                                reason="no GPU and Triton's interpreter is off")


def v6():
    from reference_impls.kernels.quant import triton_int4_v6  # its kernels import triton on the first launch

    return triton_int4_v6


def weight_and_reference(m: int, n: int, k: int, group: int, symmetric: bool, dtype: torch.dtype, seed: int):
    """(packed weight, x, float64 x @ dequant(W)^T) for a random Gaussian weight quantized by RTN."""
    gen = torch.Generator().manual_seed(seed)
    codes, scale, zero = rtn.quantize_codes(torch.randn(n, k, generator=gen) * 0.02, 4,
                                            group if group < k else "channel", symmetric)
    packed = t4.pack_int4(codes.to(DEVICE), scale.to(DEVICE), None if zero is None else zero.to(DEVICE),
                          min(group, k))
    x = torch.randn(m, k, generator=gen).to(dtype).to(DEVICE)
    ref = x.double() @ t4.dequantize_int4(packed).t()
    return packed, x, ref


def rel_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.double().cpu() - ref.cpu()).norm() / ref.cpu().norm())


@needs_triton
@pytest.mark.parametrize("kernel, m, n, k, group, symmetric, dtype, config", [
    ("mma", 1, 40, 300, 128, True, torch.bfloat16, {"splits": 3}),  # ragged N and K, uneven split
    ("mma", 3, 72, 260, 64, False, torch.float16, {"splits": 2}),  # groups of 64: a scale per 32-k slice
    ("mma", 17, 33, 200, 32, True, torch.bfloat16, {"splits": 1}),  # one split: straight into y
    ("mma", 2, 64, 512, 128, False, torch.bfloat16, {"splits": 4}),  # no masks: N % block_n = K % 128 = 0
    ("mma", 33, 48, 1000, 256, True, torch.float16, {"splits": 0}),  # block_m 32, plan_splits
    ("mma", 1, 40, 300, 128, False, torch.bfloat16, {"splits": 2, "tma": 1}),  # TMA descriptor, ragged N
    ("mma", 5, 64, 384, 128, True, torch.float16, {"splits": 3, "tma": 1}),
    ("mma", 4, 96, 640, 640, False, torch.float16, {"splits": 5, "pdl": 0}),  # one group per row, 5 splits of 1
])
def test_v6_matches_float64(kernel, m, n, k, group, symmetric, dtype, config):
    packed, x, ref = weight_and_reference(m, n, k, group, symmetric, dtype, seed=m * 1000 + n + k)
    config = {"block_n": 32} | config
    y = v6().int4_matmul_v6(x, packed, kernel, **config)
    assert y.dtype == dtype and y.shape == (m, n)
    assert rel_error(y, ref) <= 3 * rel_error(ref.to(dtype), ref) + 1e-5
    assert torch.equal(y, v6().int4_matmul_v6(x, packed, kernel, **config)), "the split sum must be deterministic"


@needs_triton
def test_v6_keeps_leading_dims_and_empty_batches():
    packed, x, ref = weight_and_reference(6, 24, 256, 128, True, torch.bfloat16, seed=7)
    y = v6().int4_matmul_v6(x.reshape(2, 3, 256), packed, block_n=32, splits=2)
    assert y.shape == (2, 3, 24)
    assert rel_error(y.reshape(6, 24), ref) <= 3 * rel_error(ref.to(torch.bfloat16), ref) + 1e-5
    assert v6().int4_matmul_v6(x[:0], packed).shape == (0, 24)


def test_v6_rejects_bad_input():
    packed, x, _ = weight_and_reference(1, 30, 256, 128, False, torch.bfloat16, seed=3)
    with pytest.raises(ValueError, match="bfloat16 or float16"):
        v6().int4_matmul_v6(x.float(), packed)
    with pytest.raises(ValueError, match="K = 255"):
        v6().int4_matmul_v6(x[:, :255], packed)
    with pytest.raises(ValueError, match="kernel must be"):
        v6().int4_matmul_v6(x, packed, "wgmma")
    with pytest.raises(ValueError, match="unknown mma config"):
        v6().int4_matmul_v6(x, packed, prefetch=2)
    with pytest.raises(ValueError, match="N % 8"):
        v6().int4_matmul_v6(x, packed, tma=1)
    with pytest.raises(ValueError, match="splits"):
        v6().int4_matmul_v6(x, packed, splits=-1)


@pytest.mark.parametrize("n, k", [(40, 300), (130, 128), (256, 520)])
def test_fragment_order_round_trips_and_puts_each_lane_s_operand_where_it_loads(n, k):
    packed, _, _ = weight_and_reference(1, n, k, 128, False, torch.bfloat16, seed=n + k)
    frags = frag.pack_fragments(packed)
    blocks = math.ceil(k / 128)
    assert frags.frags.shape == (math.ceil(n / 128) * 8, blocks, 512) and frags.frags.dtype == torch.int16
    assert torch.equal(frag.unpack_fragments(frags), packed.qweight)
    gen = torch.Generator().manual_seed(n)
    for _ in range(50):  # lane 4g + t of warp tile `tile` holds A[g + 8h, 16s + 8u + 2t + v] at 64(4s + 2u + h) + ...
        row, b, kl = (int(torch.randint(0, hi, (1,), generator=gen)) for hi in (n, blocks, 32))
        g, h, s, u, t, v = row % 8, row // 8 % 2, kl // 16, kl // 8 % 2, kl // 2 % 4, kl % 2
        slot = 64 * (4 * s + 2 * u + h) + 2 * (4 * g + t) + v
        assert frags.frags[row // 16, b, slot] == packed.qweight[32 * b + kl, row]


def test_fragment_kernel_says_what_it_needs():
    packed, x, _ = weight_and_reference(1, 32, 256, 128, True, torch.bfloat16, seed=5)
    with pytest.raises(ValueError, match="FragmentInt4"):
        v6().int4_matmul_v6(x, packed, "fragment")
    frags = frag.pack_fragments(packed)
    with pytest.raises(ValueError, match="FragmentInt4"):
        v6().int4_matmul_v6(x, frags, "mma")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="interpreter"):
            v6().int4_matmul_v6(x, frags, "fragment")
    else:
        with pytest.raises(ValueError, match="block_m 8 or 16"):
            v6().int4_matmul_v6(x, frags, "fragment", block_m=32)
        with pytest.raises(ValueError, match="row_tiles 1 or 2"):
            v6().int4_matmul_v6(x, frags, "fragment", row_tiles=3)
    grouped = frag.pack_fragments(weight_and_reference(1, 32, 256, 64, True, torch.bfloat16, seed=6)[0])
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="groups of a multiple"):
            v6().int4_matmul_v6(x, grouped, "fragment")


def test_fragment_config_checks_the_v7_staging_options():
    """check_fragment_config (as on CUDA: it reads only the device type) fills x_smem and names what it rejects."""
    frags = frag.pack_fragments(weight_and_reference(1, 32, 256, 128, True, torch.bfloat16, seed=8)[0])
    cuda = torch.device("cuda")

    def checked(m: int = 1, **over) -> dict:
        cfg = frag.default_fragment_config(m) | over
        frag.check_fragment_config(cfg, frags, cuda, m)
        return cfg

    assert checked()["x_smem"] == 3 and checked()["zero_by_sum"] == 0  # one staged row of x, per-weight zero point
    assert checked(2)["x_smem"] == 1 and checked(8)["x_smem"] == 1  # every row staged, 8 B-operand columns
    assert checked(zero_by_sum=2)["x_smem"] == 1  # the one-row staging holds no sum(x)
    assert checked(k_warps=2, block_n=32)["x_smem"] == 0 and checked(9)["x_smem"] == 0
    assert checked(zero_by_sum=2, x_smem=2)["zero_by_sum"] == 2
    with pytest.raises(ValueError, match="x_smem=3 stages one row of x and no sum.x.: it takes M = 1"):
        checked(2, x_smem=3)
    with pytest.raises(ValueError, match="zero_by_sum 0 or 1; got M = 1, zero_by_sum 2"):
        checked(zero_by_sum=2, x_smem=3)
    with pytest.raises(ValueError, match="zero_by_sum takes"):
        checked(zero_by_sum=3)
    with pytest.raises(ValueError, match="x_smem 0, 1 .swizzled., 2 .lane-major. or 3"):
        checked(x_smem=4)
    with pytest.raises(ValueError, match="k_warps must be 1"):
        checked(k_warps=2, block_n=32, x_smem=1)
    with pytest.raises(ValueError, match="laid out for block_m 8"):
        checked(9, x_smem=2)


def test_lane_major_x_layout_gives_each_lane_its_b_operand_in_16_contiguous_bytes():
    """x_smem 2's shared layout: a bijection of [4, 32, 8] (plane, k, column) onto 1024 offsets in which lane
    4g + t' of m16n8k16's B operand (k = 2t' + v + 8u + 16s, column g) finds its 8 values at 8 (4g + t') + 0 .. 7,
    and the staging view [blocks, 4, 32, 8] is the same bytes with block i at 1024 i."""
    pytest.importorskip("triton.experimental.gluon")
    from reference_impls.kernels.quant.triton_int4_fragment_kernel import x_smem_layouts

    per_block, whole = x_smem_layouts(2, 5)
    offsets = {}
    for o in range(1024):
        coord = [0, 0, 0]
        for bit, basis in enumerate(per_block.offset_bases):
            if o >> bit & 1:
                coord = [c ^ b for c, b in zip(coord, basis, strict=True)]
        offsets[tuple(coord)] = o
    assert sorted(offsets) == [(j, k, m) for j in range(4) for k in range(32) for m in range(8)]
    for g in range(8):
        for t in range(4):
            regs = [offsets[(1, 2 * t + v + 8 * u + 16 * s, g)] for s in (0, 1) for u in (0, 1) for v in (0, 1)]
            assert sorted(regs) == list(range(256 + 8 * (4 * g + t), 256 + 8 * (4 * g + t) + 8))
    assert whole.offset_bases[:10] == [[0, *b] for b in per_block.offset_bases]
    assert whole.offset_bases[10:] == [[1, 0, 0, 0], [2, 0, 0, 0], [4, 0, 0, 0]]


@pytest.mark.parametrize("tiles, blocks, expected", [(64, 112, 16), (224, 32, 4), (64, 32, 16), (512, 4, 2),
                                                     (2000, 32, 1), (10, 3, 1)])
def test_plan_splits_reaches_the_target_with_even_splits(tiles, blocks, expected):
    splits = v6().plan_splits(tiles, blocks, sms=132, target=8)
    assert splits == expected
    plan = v6().launch_plan("mma", 1, tiles * 64, blocks * 128, {"block_m": 16, "block_n": 64, "splits": 0}, 132)
    assert plan["splits"] * plan["per_split"] >= blocks > (plan["splits"] - 1) * plan["per_split"]
    assert math.ceil(blocks / plan["per_split"]) == plan["splits"]


def test_modules_that_need_no_triton_import_without_it():
    """The packing, planning and public modules import with triton blocked; the kernels load on the first launch."""
    code = ("import sys; sys.modules['triton'] = None\n"
            "import torch\n"
            "from reference_impls.kernels.quant import rtn, triton_int4 as t4, triton_int4_fragment as frag\n"
            "from reference_impls.kernels.quant import triton_int4_v6 as v6\n"
            "codes, scale, zero = rtn.quantize_codes(torch.randn(24, 256) * 0.02, 4, 128, True)\n"
            "packed = t4.pack_int4(codes, scale, zero, 128)\n"
            "assert torch.equal(frag.unpack_fragments(frag.pack_fragments(packed)), packed.qweight)\n"
            "assert v6.launch_plan('mma', 1, 4096, 4096, v6.default_config('mma', 1))['splits'] > 1\n"
            "assert 'Gluon' in frag.gluon_unavailable() and 'CUDA' in frag.fragment_unavailable('cpu')\n")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60,
                          env=os.environ | {"PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr[-2000:]


def test_fragment_kernel_says_where_it_cannot_run():
    assert "CUDA" in frag.fragment_unavailable("cpu")
    assert frag.default_fragment_config(8)["block_m"] == 8 and frag.default_fragment_config(9)["block_m"] == 16
    packed, _, _ = weight_and_reference(1, 130, 300, 128, False, torch.bfloat16, seed=11)
    frags = frag.pack_fragments(packed)
    assert frags.nbytes == 16 * 3 * 512 * 2 + packed.nbytes - packed.qweight.numel() * 2  # N padded to 256


# --- the quant_matmul workload's v6 entries -----------------------------------------------------------------------

def quant_matmul():
    from harness.registry import REGISTRY

    return REGISTRY.load().workload("quant_matmul"), REGISTRY


@needs_triton
@pytest.mark.parametrize("params", [
    {"M": 3, "N": 72, "K": 200, "group": 64, "symmetric": False, "dtype": "bfloat16"},  # ragged K, a scale per 32
    {"M": 17, "N": 40, "K": 300, "group": 128, "symmetric": True, "dtype": "float16"},  # block_m 32, ragged N
    {"M": 1, "N": 64, "K": 1024, "group": 0, "symmetric": True, "dtype": "bfloat16"},  # one group per row, splits
])
def test_workload_runs_triton_int4_v6_and_its_check_passes(params):
    """The CUDA-only impl on CPU through the interpreter: the workload's inputs (with triton_int4's packed weight
    added, as `inputs` builds it on CUDA), its float64 reference and its check."""
    workload, registry = quant_matmul()
    params = {p.name: p.default for p in workload.params} | params
    inputs = workload.inputs(params, "cpu", 0)
    assert "triton_int4" not in inputs["weight"] and "triton_int4_fragment" not in inputs["weight"]
    w = inputs["weight"]
    inputs["weight"]["triton_int4"] = t4.pack_int4(w["codes"], w["scale"], w["zero"], w["group_size"])
    reference = workload.reference(inputs, params)
    output = registry.impl("quant_matmul", "triton_int4_v6").fn(inputs, params)
    verdict = workload.check(output, reference, None)
    assert verdict.passed and verdict.error > 0, verdict
    assert workload.unsupported("triton_int4_v6", params, "cuda") is None


def test_workload_costs_of_v6_are_v5_s_bytes_and_say_what_differs():
    workload, _ = quant_matmul()
    params = {p.name: p.default for p in workload.params}  # M=1, 4096 x 4096, int4 g128 sym, bf16
    v5, mma, fragment = (workload.cost(params, impl) for impl in ("triton_int4", "triton_int4_v6",
                                                                  "triton_int4_fragment"))
    assert v5.flops == mma.flops == fragment.flops == 2 * 4096 * 4096
    assert v5.bytes == mma.bytes == fragment.bytes  # the same weight, x and y at minimum
    assert (v5.launches, mma.launches, fragment.launches) == (1, 2, 2)  # the sum kernel is a second launch
    for cost, kernel in ((mma, "mma"), (fragment, "fragment")):
        splits = v6().launch_plan(kernel, 1, 4096, 4096, v6().default_config(kernel, 1))["splits"]
        assert splits > 1
        assert cost.traffic_bytes["dram"] == cost.bytes["dram"] + 2 * 4 * 4096 * splits  # float32 partials, w + r
    ragged = params | {"N": 4100}  # the fragment kernel reads the last row tile whole: 60 padded rows of 2 KiB
    cost = workload.cost(ragged, "triton_int4_fragment")
    splits = v6().launch_plan("fragment", 1, 4100, 4096, v6().default_config("fragment", 1))["splits"]
    assert cost.traffic_bytes["dram"] - cost.bytes["dram"] == 2 * 4 * 4100 * splits + 60 * 32 * 64

def test_workload_says_where_triton_int4_fragment_cannot_run():
    workload, _ = quant_matmul()
    params = {p.name: p.default for p in workload.params}
    assert "M <= 8" in workload.unsupported("triton_int4_fragment", params | {"M": 16}, "cuda")
    assert "CUDA" in workload.unsupported("triton_int4_fragment", params, "cpu")
    assert "multiple of 128" in workload.unsupported("triton_int4_fragment", params | {"group": 64}, "cuda")
    assert "bfloat16 or float16" in workload.unsupported("triton_int4_fragment", params | {"dtype": "float32"},
                                                         "cuda")
    assert "4-bit" in workload.unsupported("triton_int4_v6", params | {"bits": 8}, "cuda")
    assert "bfloat16 or float16" in workload.unsupported("triton_int4_v6", params | {"dtype": "float32"}, "cuda")
    reason = workload.unsupported("triton_int4_fragment", params, "cuda")
    if not torch.cuda.is_available():
        assert "CUDA GPU" in reason
    elif torch.cuda.get_device_capability()[0] != 9:
        assert "Hopper" in reason
    for why in (workload.unsupported("triton_int4_fragment", params | {"M": 16}, "cuda"), reason):
        assert why is None or "\n" not in why


def test_suite_runs_v6_beside_v5_and_the_filter_selects_them():
    from harness.runner import select
    from harness.suite import load_suite

    _, registry = quant_matmul()
    cases = load_suite(str(Path(__file__).resolve().parents[1] / "suites" / "quant_matmul.yaml"), registry).cases
    chosen = select(cases, [r"/(bf16|triton_int4\w*)\[.*bits=4.*@cuda"])
    impls = {impl: sum(c.impl == impl for c in chosen) for impl in ("bf16", "triton_int4", "triton_int4_v6",
                                                                     "triton_int4_fragment")}
    assert impls == {"bf16": 27, "triton_int4": 27, "triton_int4_v6": 27, "triton_int4_fragment": 27}
    assert len(chosen) == 108
