"""Where the int4 fragment kernel's time goes at M = 1 (issue 5): leave-one-out timings and an ncu profile.

    PYTHONPATH=. python scripts/profile_int4.py --out DIR            # timings (graph replay, as bench_int4_v6)
    ncu --clock-control none --profile-from-start off --set full -o DIR/prof \\
        python scripts/profile_int4.py --ncu                          # one launch of each kernel, profiled
    ncu -i DIR/prof.ncu-rep --page source --csv --print-source sass > DIR/sass.csv
    python scripts/profile_int4.py --hot DIR/sass.csv                 # hottest instructions and their stalls

Timings, per shape, each the median of `--rounds` interleaved rounds: bf16 F.linear, the read floor kernel at
several bytes-in-flight per program (how much memory-level parallelism a 30 MB stream needs on this GPU), the
fragment call (partials + sum kernel), the partial kernel alone (no sum) and the sum kernel alone.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from bench_int4_v6 import Sets  # noqa: E402
from bench_quant_matmul import read_floor, read_kernel, time_per_call  # noqa: E402

from reference_impls.kernels.quant import triton_int4_v6 as v6  # noqa: E402

SHAPES = [(4096, 14336), (14336, 4096)]


def read_entry(nbytes: int, block: int, per: int, warps: int):
    """The read floor (bench_quant_matmul.read_floor) with per x block int32 in flight per program, in us."""
    return lambda: read_floor(nbytes, block, per, warps, copy=False)[0] * 1e6


def parts(sets: Sets, m: int):
    """(full call, partial kernel only, sum kernel only) as callables of a weight-set index."""
    from reference_impls.kernels.quant import triton_int4_v6_kernels as kernels
    from reference_impls.kernels.quant.triton_int4_fragment_kernel import launch_fragment

    x = sets.x[m]
    n, k = sets.n, sets.k
    cfg = v6._check_inputs(x, sets.frags[0], "fragment", {})
    cfg.pop("kernel")
    plan = v6.launch_plan("fragment", m, n, k, cfg, 132)
    dst = torch.empty(plan["splits"], m, n, dtype=torch.float32, device="cuda")
    out = torch.empty(m, n, dtype=x.dtype, device="cuda")
    even = dict(SYMMETRIC=True, EVEN_N=n % cfg["block_n"] == 0, EVEN_K=k % 128 == 0, PDL=False)

    def partial(i: int) -> None:
        w = sets.frags[i]
        launch_fragment(x, w, dst, w.scale, plan, cfg, 0 if w.group_size >= k else w.group_size, even)

    def summed(i: int) -> None:
        kernels.sum_splits_kernel[(math.ceil(m * n / v6.SUM_BLOCK),)](dst, out, m * n, dst.stride(0),
                                                                      SPLITS=plan["splits"], BLOCK=v6.SUM_BLOCK,
                                                                      PDL=False, num_warps=4)

    return (lambda i: v6.int4_matmul_v6(x, sets.frags[i], "fragment")), partial, summed, plan


def time_shape(n: int, k: int, rounds: int) -> list[str]:
    sets = Sets(n, k, (1,))
    nbytes = sets.int4[0].nbytes + 2 * (n + k)
    full, partial, summed, plan = parts(sets, 1)
    count = len(sets.frags)
    entries = {"bf16": lambda: time_per_call(lambda i: F.linear(sets.x[1], sets.bf16[i]), len(sets.bf16)) * 1e6,
               "frag_full": lambda: time_per_call(full, count) * 1e6,
               "frag_partial_only": lambda: time_per_call(partial, count) * 1e6,
               "sum_only": lambda: time_per_call(summed, count) * 1e6}
    for block, per, warps in [(1024, 4, 4), (512, 1, 4), (512, 2, 4), (512, 4, 4), (1024, 8, 4), (2048, 4, 8),
                              (1024, 16, 4), (4096, 8, 8)]:
        entries[f"read_{block * per * 4 // 1024}KB_w{warps}"] = read_entry(nbytes, block, per, warps)
    samples: dict[str, list[float]] = {name: [] for name in entries}
    for _ in range(rounds):
        for name, fn in entries.items():
            samples[name].append(fn())
    lines = [f"N={n} K={k} M=1 ({nbytes / 1e6:.1f} MB int4; plan {plan}):"]
    for name, values in samples.items():
        med = statistics.median(values)
        lines.append(f"  {name:22s} {med:7.2f} us (spread {max(values) - min(values):.2f}) "
                     f"{nbytes / med / 1e3:7.0f} GB/s-of-int4-bytes")
    print("\n".join(lines), flush=True)
    return lines


def timings(out: Path, rounds: int) -> None:
    lines = []
    for n, k in SHAPES:
        lines += time_shape(n, k, rounds)
        torch.cuda.empty_cache()
    (out / "timings.txt").write_text("\n".join(lines) + "\n")


def ncu_launches() -> None:
    """Compile and warm everything, then one profiled launch of each kernel between profiler start and stop."""
    n, k = SHAPES[0]
    sets = Sets(n, k, (1,))
    full, partial, summed, _ = parts(sets, 1)
    nbytes = sets.int4[0].nbytes + 2 * (n + k)
    words = nbytes // 4
    src = torch.randint(-2**30, 2**30, (words,), dtype=torch.int32, device="cuda")
    grid = math.ceil(words / 4096)
    dst = torch.empty(grid, dtype=torch.int32, device="cuda")
    calls = [lambda: F.linear(sets.x[1], sets.bf16[0]), lambda: full(1), lambda: partial(2), lambda: summed(2),
             lambda: read_kernel()[(grid,)](src, dst, words, BLOCK=1024, PER=4, num_warps=4)]
    for call in calls:
        call()
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    for call in calls:
        call()
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()


def hot_instructions(csv_path: Path, top: int = 40) -> str:
    """The `top` SASS instructions by warp-stall samples from ncu's source page (--csv --print-source sass), with
    each one's largest stall reasons."""
    import csv as csvlib

    lines, kernel = [], None
    rows: list[dict] = []
    with open(csv_path) as f:
        reader = csvlib.reader(f)
        header = None
        for rec in reader:
            if rec and rec[0] == "Kernel Name":
                if header and rows:
                    lines += _hot(kernel, header, rows, top)
                kernel, header, rows = rec[1], None, []
            elif rec and rec[0] == "Address":
                header = rec
            elif header and rec:
                rows.append(dict(zip(header, rec, strict=False)))
    if header and rows:
        lines += _hot(kernel, header, rows, top)
    return "\n".join(lines)


def _hot(kernel: str, header: list[str], rows: list[dict], top: int) -> list[str]:
    def num(v: str) -> float:
        try:
            return float(v.replace(",", ""))
        except ValueError:
            return 0.0

    stalls = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
    total = sum(num(r.get("Warp Stall Sampling (All Samples)", "0")) for r in rows)
    out = [f"== {kernel}: {len(rows)} instructions, {total:.0f} samples; by reason: " + ", ".join(
        f"{h[6:]} {sum(num(r[h]) for r in rows) / max(total, 1) * 100:.0f}%" for h in stalls
        if sum(num(r[h]) for r in rows) / max(total, 1) > 0.01)]
    for r in sorted(rows, key=lambda r: -num(r.get("Warp Stall Sampling (All Samples)", "0")))[:top]:
        samples = num(r.get("Warp Stall Sampling (All Samples)", "0"))
        why = sorted(((num(r[h]), h[6:]) for h in stalls), reverse=True)[:3]
        out.append(f"{r['Address']:>6} {samples / max(total, 1) * 100:5.1f}% {r['Source'][:70]:70s} "
                   + " ".join(f"{name}:{v:.0f}" for v, name in why if v))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/profile-int4"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ncu", action="store_true", help="one profiled launch of each kernel (run under ncu)")
    parser.add_argument("--hot", type=Path, help="print the hottest instructions of an ncu source-page csv")
    args = parser.parse_args()
    if args.hot:
        print(hot_instructions(args.hot))
        return
    if args.ncu:
        ncu_launches()
        return
    args.out.mkdir(parents=True, exist_ok=True)
    timings(args.out, args.rounds)


if __name__ == "__main__":
    main()
