"""LUT and ternary GEMV on this CPU against dequantize-then-matmul and the dense matvec (M = 1, float32).

    PYTHONPATH=. python scripts/bench_quant_cpu.py [--n 4096 --k 4096]   # or bench_quant_matmul.py --cpu

At 4, 3 and 2 bits (group 128, symmetric RTN codes): each implementation is checked against the float64 product of
the same quantized weight, then timed in interleaved rounds; speedups are taken from the fastest calls.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_quant_matmul import GROUP, rel_error

from reference_impls.kernels.quant import dequant_matmul as dm
from reference_impls.kernels.quant import lut_gemv as lut
from reference_impls.kernels.quant import rtn
from reference_impls.kernels.quant import ternary_gemv as tern


def cpu_seconds(calls: dict[str, Callable[[], object]], rounds: int = 9) -> dict[str, tuple[float, float]]:
    """(fastest, median) seconds per call of each implementation, timed in interleaved rounds (one call of each
    per round, after a warm-up round) so that load from other processes falls on all of them alike. On a shared
    machine the fastest call is the better estimate of the code's own cost (others only ever add time)."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(rounds + 1):
        for name, call in calls.items():
            begin = time.perf_counter()
            call()
            if round_:
                samples[name].append(time.perf_counter() - begin)
    return {name: (min(times), statistics.median(times)) for name, times in samples.items()}


def cpu_calls(weight: torch.Tensor, x: torch.Tensor, bits: int) -> tuple[dict[str, Callable[[], object]], torch.Tensor]:
    """The implementations compared at `bits` (each a no-argument call) and the float64 reference."""
    codes, scale, zero = rtn.quantize_codes(weight, bits, GROUP, True)
    dense = dm.dequantize(codes, scale, zero, GROUP)
    planes = lut.pack_bitplanes(codes, scale, zero, GROUP, bits)
    calls = {"dense fp32 matvec": functools.partial(F.linear, x, dense),
             "dequant_matmul": functools.partial(dm.dequant_matmul, x, codes, scale, zero, GROUP),
             "lut_gemv (g=8)": functools.partial(lut.lut_gemv, x, planes, 8),
             "lut_gemv (g=4)": functools.partial(lut.lut_gemv, x, planes, 4)}
    if bits == 2:
        calls["ternary_gemv (g=8)"] = functools.partial(tern.ternary_gemv, x, tern.pack_ternary(codes, scale, GROUP))
    return calls, dm.reference_matmul(x, codes, scale, zero, GROUP)


def cpu_bench(n: int, k: int) -> None:
    """LUT and ternary GEMV against dequantize-then-matmul and the dense matvec, M = 1, float32, this CPU."""
    torch.manual_seed(0)
    weight = torch.randn(n, k) * 0.02
    x = torch.randn(1, k)
    print(f"CPU, {torch.get_num_threads()} threads, N={n} K={k} M=1 float32, group {GROUP}, symmetric")
    print(f"{'weights':10s} {'implementation':24s} {'min ms':>8s} {'median':>8s} {'x dequant':>10s} {'x dense':>8s} "
          f"{'error':>9s}   (speedups from the fastest calls)")
    for bits in (4, 3, 2):
        calls, ref = cpu_calls(weight, x, bits)
        errors = {name: rel_error(call(), ref) for name, call in calls.items()}
        timed = cpu_seconds(calls)
        fastest = {name: t[0] for name, t in timed.items()}
        for name, (best, median) in timed.items():
            print(f"int{bits}-g{GROUP:<5d} {name:24s} {best * 1e3:8.2f} {median * 1e3:8.2f} "
                  f"{fastest['dequant_matmul'] / best:10.2f} {fastest['dense fp32 matvec'] / best:8.2f} "
                  f"{errors[name]:9.1e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--k", type=int, default=4096)
    args = parser.parse_args()
    cpu_bench(args.n, args.k)


if __name__ == "__main__":
    main()
