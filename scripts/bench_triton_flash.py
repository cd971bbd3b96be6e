"""triton_flash on a GPU: correctness against float64, then TFLOP/s beside torch SDPA's flash backend.

    PYTHONPATH=$PWD python scripts/bench_triton_flash.py [--sweep] [--out DIR]

Correctness first: fresh random inputs at ragged lengths, the output buffer poisoned with NaN beforehand (so
an unwritten element fails), error held to 2x the naive implementation's in the same dtype. Then the timing
table: bf16, 16 heads, causal at 4K/16K/64K tokens and non-causal at 16K, head_dim 128 and 64, batch sized
so that short sequences still fill the GPU. FLOPs = 4·b·h·s²·d, halved for causal (the useful work, the same
for both kernels). `--sweep` first times candidate launch configs at 16K tokens and adds the best to the
table. Imports only the kernel modules, not the workload registry.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch
import triton
import triton.testing
from torch.nn.attention import SDPBackend, sdpa_kernel

from reference_impls.kernels.attention import attention_reference, naive_attention
from reference_impls.kernels.triton_flash import (
    H100_CONFIGS,
    FlashConfig,
    default_config,
    launch_flash_forward,
    triton_flash_attention,
)

HEADS = 16
TABLE = [(4096, 4, True), (16384, 1, True), (65536, 1, True), (16384, 1, False)]  # (seq, batch, causal)
CHECKS = [(1000, 128, True, torch.bfloat16), (4097, 64, False, torch.bfloat16), (2053, 128, False, torch.float16),
          (3001, 64, True, torch.float16), (777, 128, True, torch.float32)]  # (seq, head_dim, causal, dtype)
SWEEP = {
    64: [FlashConfig(128, 64, 4, 3), FlashConfig(128, 64, 4, 4), FlashConfig(128, 128, 4, 3),
         FlashConfig(128, 128, 8, 3), FlashConfig(128, 64, 8, 3), FlashConfig(64, 64, 4, 3)],
    128: [FlashConfig(128, 64, 8, 3), FlashConfig(128, 64, 4, 3), FlashConfig(128, 128, 8, 3),
          FlashConfig(128, 128, 8, 2), FlashConfig(128, 64, 8, 4), FlashConfig(64, 64, 4, 3)],
}


def qkv(batch: int, seq: int, head_dim: int, dtype: torch.dtype, seed: int, heads: int = HEADS) -> list:
    g = torch.Generator(device="cuda").manual_seed(seed)
    shape = (batch, heads, seq, head_dim)  # [B, H, S, D]
    return [torch.randn(shape, generator=g, device="cuda", dtype=torch.float32).to(dtype) for _ in range(3)]


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out = out.double()
    if not torch.isfinite(out).all():
        return float("inf")
    return float((out - ref).norm() / ref.norm())


def check_correctness() -> list[dict]:
    rows = []
    for i, (seq, head_dim, causal, dtype) in enumerate(CHECKS):
        q, k, v = qkv(2, seq, head_dim, dtype, seed=100 + i, heads=3)
        torch.full_like(q, float("nan"))  # freed at once: the output below reuses this poisoned block
        out = triton_flash_attention(q, k, v, causal)
        ref = attention_reference(q, k, v, causal)
        error, naive = rel_error(out, ref), rel_error(naive_attention(q, k, v, causal), ref)
        tolerance = 2 * naive + torch.finfo(dtype).eps
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION if dtype != torch.float32 else SDPBackend.MATH):
            sdpa = rel_error(torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal), ref)
        rows.append({"seq": seq, "head_dim": head_dim, "causal": causal, "dtype": str(dtype).split(".")[-1],
                     "error": error, "naive_error": naive, "sdpa_error": sdpa, "tolerance": tolerance,
                     "passed": error <= tolerance})
        print(f"check seq={seq} d={head_dim} causal={causal} {rows[-1]['dtype']}: error {error:.2e} "
              f"(naive {naive:.2e}, sdpa {sdpa:.2e}) {'PASS' if rows[-1]['passed'] else 'FAIL'}", flush=True)
    return rows


def tflops(ms: float, batch: int, seq: int, head_dim: int, causal: bool) -> float:
    return 4.0 * batch * HEADS * seq * seq * head_dim * (0.5 if causal else 1.0) / (ms * 1e-3) / 1e12


def time_ms(fn) -> float:
    return float(triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median"))


def time_triton(q, k, v, causal: bool, config: FlashConfig) -> tuple[float, dict]:
    out = torch.empty_like(q)
    kernel = launch_flash_forward(q, k, v, out, causal, config)
    try:  # what the compiler made of the config: registers, spills, Hopper's warpgroup MMA or not
        info = {"registers": kernel.n_regs, "spills": kernel.n_spills, "wgmma": "wgmma" in kernel.asm["ptx"]}
    except (AttributeError, KeyError, TypeError) as exc:
        info = {"compiled_info": f"unavailable: {exc}"}
    return time_ms(lambda: launch_flash_forward(q, k, v, out, causal, config)), info


def time_sdpa(q, k, v, causal: bool) -> float:
    def run():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return time_ms(run)


def sweep() -> tuple[list[dict], dict]:
    rows, best = [], {}
    for head_dim, configs in SWEEP.items():
        q, k, v = qkv(1, 16384, head_dim, torch.bfloat16, seed=7)
        for causal in (True, False):
            for config in configs:
                try:
                    ms, info = time_triton(q, k, v, causal, config)
                except Exception as exc:  # out of shared memory and the like: record and go on
                    rows.append({"head_dim": head_dim, "causal": causal, "config": config.__dict__,
                                 "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
                    continue
                rate = tflops(ms, 1, 16384, head_dim, causal)
                rows.append({"head_dim": head_dim, "causal": causal, "config": config.__dict__, "ms": ms,
                             "tflops": rate, **info})
                print(f"sweep d={head_dim} causal={causal} {config}: {rate:.0f} TFLOP/s {info}", flush=True)
                if rate > best.get((head_dim, causal), (0.0, None))[0]:
                    best[(head_dim, causal)] = (rate, config)
    return rows, {key: config for key, (_, config) in best.items()}


def table(best: dict) -> list[dict]:
    rows = []
    for head_dim in (128, 64):
        for seq, batch, causal in TABLE:
            q, k, v = qkv(batch, seq, head_dim, torch.bfloat16, seed=seq + head_dim)
            row = {"head_dim": head_dim, "seq": seq, "batch": batch, "heads": HEADS, "causal": causal}
            sdpa_ms = time_sdpa(q, k, v, causal)
            configs = {"table": default_config(head_dim, causal, q.device)}
            if best.get((head_dim, causal)) not in (None, configs["table"]):
                configs["sweep_best"] = best[(head_dim, causal)]
            for name, config in configs.items():
                ms, info = time_triton(q, k, v, causal, config)
                row[name] = {"config": config.__dict__, "ms": ms, "tflops": tflops(ms, batch, seq, head_dim, causal),
                             **info}
            row["sdpa_flash"] = {"ms": sdpa_ms, "tflops": tflops(sdpa_ms, batch, seq, head_dim, causal)}
            row["ratio"] = row["table"]["tflops"] / row["sdpa_flash"]["tflops"]
            rows.append(row)
            best_note = (f"  sweep-best {row['sweep_best']['tflops']:.0f}" if "sweep_best" in row else "")
            print(f"d={head_dim} seq={seq} b={batch} causal={causal}: triton {row['table']['tflops']:.0f} "
                  f"sdpa_flash {row['sdpa_flash']['tflops']:.0f} TFLOP/s ratio {row['ratio']:.2f}{best_note}",
                  flush=True)
            del q, k, v
    return rows


def render(rows: list[dict]) -> str:
    lines = ["head_dim  seq    batch causal  triton_flash  sdpa_flash  ratio   (TFLOP/s, bf16, 16 heads)"]
    for r in rows:
        lines.append(f"{r['head_dim']:>8}  {r['seq']:>5}  {r['batch']:>5} {str(r['causal']):>6}  "
                     f"{r['table']['tflops']:>12.1f}  {r['sdpa_flash']['tflops']:>10.1f}  {r['ratio']:>5.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", action="store_true", help="time candidate configs at 16K tokens first")
    parser.add_argument("--out", default=os.environ.get("OUT", "results"), help="folder for the result files")
    args = parser.parse_args()
    torch.manual_seed(0)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "python": platform.python_version(), "tuned_table": {f"{d},{c}": cfg.__dict__
                                                                   for (d, c), cfg in H100_CONFIGS.items()},
              "checks": check_correctness()}
    sweep_rows, best = sweep() if args.sweep else ([], {})
    result["sweep"] = sweep_rows
    result["table"] = table(best)
    text = render(result["table"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "triton_flash_h100.json").write_text(json.dumps(result, indent=1))
    (out / "triton_flash_h100.txt").write_text(f"{result['device']}, torch {result['torch']}, "
                                               f"triton {result['triton']}\n{text}\n")
    print(text)
    if not all(row["passed"] for row in result["checks"]):
        raise SystemExit("correctness check FAILED")


if __name__ == "__main__":
    main()
