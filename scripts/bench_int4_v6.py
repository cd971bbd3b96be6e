"""int4 W4A16 v6 (two-pass split K, triton_int4_v6.py) against v5, bf16 and the read floor, on one GPU.

    PYTHONPATH=. python scripts/bench_int4_v6.py --out results/published/h100-quant-matmul/v6 [--no-sweep]
        [--rounds 5] [--v7]

--v7 runs instead: the fragment kernel's v7 staging options (zero_by_sum 2: sum(x) per block staged once per
program, the zero point folded out of the loop; x_smem 1/2: x staged in shared memory, swizzled / lane-major)
checked against float64 (sym and asym, bf16 and fp16, ragged, the fallback past MAX_STAGED_BLOCKS, a CUDA graph),
then bf16, the read floor, the fragment default and each option at M = 1, 2, 4 and 8 on the three shapes in --rounds
interleaved rounds; writes v7_log.txt, v7_table.csv and v7_table.md.

1. check: v6 (mma with and without pdl / tma, the Gluon fragment kernel in several configs) against float64 on
   fresh random inputs, ragged shapes included; error <= 2 x the error of rounding the exact product to the dtype
   (+ 1e-4), repeat bit-identical, and one pdl launch replayed from a CUDA graph equal to the eager result.
2. sweep (M = 1 and 16, the three shapes; skipped by --no-sweep): the read floor, bf16, v5's default
   (triton_int4.int4_matmul), and v6 variants (pdl, splits, tile shapes, zero point per block or per weight, warps
   along K), each the min of two measurements taken in two passes.
3. final table: bf16, v5's default, v6's mma and fragment defaults, the fragment kernel with two row tiles and the
   zero point by sum(x) (FRAGMENT_RT2), and the read floor, in --rounds interleaved rounds, median and spread.
Timing as scripts/bench_quant_matmul.py does (its time_per_call: a CUDA graph of calls cycling through weight sets
over 200 MB = 4x L2, median of 5 replays; its read_floor). Writes v6_log.txt, v6_sweep.csv, v6_table.csv and
v6_table.md to --out.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_quant_matmul import ROTATE_BYTES, SHAPES, copy_bandwidth, random_int4, read_floor, rel_error, time_per_call

from reference_impls.kernels.quant import triton_int4 as t4
from reference_impls.kernels.quant import triton_int4_fragment as frag
from reference_impls.kernels.quant import triton_int4_v6 as v6

BATCHES = (1, 16)
FRAGMENT_RT2 = {"row_tiles": 2, "block_n": 128, "zero_by_sum": 1}  # the final table's second fragment config
LOG: list[str] = []


def say(line: str) -> None:
    print(line, flush=True)
    LOG.append(line)


def check() -> bool:
    """v6 against float64 (GPU rounding: 2x the dtype's own error + 1e-4) and bit-identical on repeat."""
    ok = True
    cases = [  # (kernel, m, n, k, symmetric, dtype, group, config)
        ("mma", 1, 4096, 4096, True, torch.bfloat16, 128, {}),
        ("mma", 1, 4096, 14336, False, torch.bfloat16, 128, {}),
        ("mma", 16, 14336, 4096, True, torch.bfloat16, 128, {}),
        ("mma", 1, 4096, 14336, True, torch.bfloat16, 128, {"tma": 1}),
        ("mma", 1, 4096, 4096, True, torch.bfloat16, 128, {"pdl": 0}),
        ("mma", 5, 1000, 1000, True, torch.float16, 32, {"splits": 3}),
        ("mma", 33, 4100, 4104, False, torch.bfloat16, 64, {}),
        ("mma", 1, 334, 4100, False, torch.bfloat16, 128, {"splits": 5}),
        ("mma", 7, 1000, 1000, False, torch.float16, 1000, {"tma": 1}),
        ("mma", 130, 1000, 1000, True, torch.bfloat16, 256, {}),
        ("fragment", 1, 4096, 4096, True, torch.bfloat16, 128, {}),
        ("fragment", 1, 4096, 14336, False, torch.bfloat16, 128, {"row_tiles": 2, "block_n": 128}),
        ("fragment", 16, 14336, 4096, True, torch.bfloat16, 128, {"zero_by_sum": 1}),
        ("fragment", 5, 1000, 1000, True, torch.float16, 1000, {"splits": 3}),
        ("fragment", 33, 4100, 4104, False, torch.bfloat16, 256, {"block_n": 128}),
        ("fragment", 1, 334, 4100, False, torch.bfloat16, 128, {"splits": 5}),
        ("fragment", 3, 1000, 1000, False, torch.float16, 128, {"block_n": 32, "num_warps": 2, "splits": 1}),
        ("fragment", 1, 4096, 14336, True, torch.bfloat16, 128, {"k_warps": 4, "block_n": 16, "splits": 1}),
        ("fragment", 2, 1000, 4104, False, torch.float16, 256, {"k_warps": 2, "block_n": 32, "splits": 3}),
        ("fragment", 1, 334, 1000, True, torch.bfloat16, 1000, {"k_warps": 8, "block_n": 16, "num_warps": 8,
                                                                 "splits": 1}),
        ("fragment", 1, 4096, 14336, True, torch.bfloat16, 128, {"row_tiles": 2, "block_n": 128, "zero_by_sum": 1}),
        ("fragment", 3, 1000, 4104, False, torch.float16, 256, {"row_tiles": 2, "block_n": 64, "k_warps": 2}),
        ("fragment", 1, 334, 1000, True, torch.bfloat16, 128, {"row_tiles": 2, "block_n": 64, "num_warps": 2,
                                                                "splits": 2}),
        ("fragment", 9, 4100, 4104, True, torch.float16, 128, {"k_warps": 4, "block_n": 32, "num_warps": 8}),
    ]
    for kernel, m, n, k, sym, dtype, group, cfg in cases:
        w = random_int4(n, k, sym, group=group)
        x = torch.randn(m, k, device="cuda").to(dtype)
        ref = x.double() @ t4.dequantize_int4(w).t()
        if kernel == "fragment":
            w = frag.pack_fragments(w)
        try:
            y = v6.int4_matmul_v6(x, w, kernel, **cfg)
            again = v6.int4_matmul_v6(x, w, kernel, **cfg)
        except Exception as exc:  # noqa: BLE001 — reported as a failed check, the rest still runs
            say(f"check v6/{kernel} {cfg} M={m} N={n} K={k}: FAILED {type(exc).__name__}: {exc}"[:400])
            ok = False
            continue
        err, floor = rel_error(y, ref), rel_error(ref.to(dtype), ref)
        passed = err <= 2 * floor + 1e-4 and torch.equal(y, again)
        ok &= passed
        say(f"check v6/{kernel} {cfg} M={m} N={n} K={k} sym={sym} {dtype} g{group}: err {err:.2e} (dtype rounding "
            f"{floor:.2e}) {'ok' if passed else 'FAILED'}")
    w, x = random_int4(4096, 14336, True), torch.randn(1, 14336, device="cuda", dtype=torch.bfloat16)
    eager = v6.int4_matmul_v6(x, w, pdl=1)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        v6.int4_matmul_v6(x, w, pdl=1)
    torch.cuda.current_stream().wait_stream(stream)
    graph, box = torch.cuda.CUDAGraph(), []
    with torch.cuda.graph(graph):
        box.append(v6.int4_matmul_v6(x, w, pdl=1))
    graph.replay()
    torch.cuda.synchronize()
    same = torch.equal(box[0], eager)
    ok &= same
    say(f"check v6 pdl in a CUDA graph equals eager: {'ok' if same else 'FAILED'}")
    return ok


def variants(n: int, k: int, m: int) -> list[tuple[str, str, dict]]:
    """(name, kernel, config) of the v6 variants timed at (N, K, M)."""
    frag_splits = v6.launch_plan("fragment", m, n, k, v6.default_config("fragment", m), 132)["splits"]
    mma = [("v6 mma no-pdl", {"pdl": 0}), ("v6 mma default", {})]
    rt2 = {"row_tiles": 2, "block_n": 128}
    frag = [("frag default", {}), ("frag zero-by-sum", {"zero_by_sum": 1}), ("frag no-pdl", {"pdl": 0}),
            ("frag bn32 w2", {"block_n": 32, "num_warps": 2}), ("frag rt2", rt2),
            ("frag rt2 zero-by-sum", rt2 | {"zero_by_sum": 1}),
            ("frag rt2 zbs half-splits", rt2 | {"zero_by_sum": 1, "splits": max(1, frag_splits // 2)}),
            ("frag rt2 zbs 2x-splits", rt2 | {"zero_by_sum": 1, "splits": 2 * frag_splits}),
            ("frag rt2 w2 zbs", {"row_tiles": 2, "block_n": 64, "num_warps": 2, "zero_by_sum": 1}),
            ("frag kw8 s1", {"k_warps": 8, "block_n": 16, "num_warps": 8,
                                                                 "splits": 1}),
            ("frag kw4 rt2 zbs s1", {"k_warps": 4, "row_tiles": 2, "block_n": 32, "zero_by_sum": 1, "splits": 1}),
            ("frag kw4 rt2 zbs s2", {"k_warps": 4, "row_tiles": 2, "block_n": 32, "zero_by_sum": 1, "splits": 2})]
    if m > 8:
        frag = [("frag default", {}), ("frag bn64 w2", {"block_n": 64, "num_warps": 2}),
                ("frag rt2 w2 zbs", {"row_tiles": 2, "block_n": 64, "num_warps": 2, "zero_by_sum": 1})]
    return [(name, "mma", cfg) for name, cfg in mma] + [(name, "fragment", cfg) for name, cfg in frag]


V7_OPTIONS = {"fold": {"zero_by_sum": 2}, "xsmem1": {"x_smem": 1}, "fold+xsmem1": {"zero_by_sum": 2, "x_smem": 1},
              "fold+xsmem2": {"zero_by_sum": 2, "x_smem": 2}}
V7_TIMED = {"v6 (x_smem 0)": {"x_smem": 0}, "v7 (x_smem 1)": {"x_smem": 1}, "xsmem2": {"x_smem": 2},
            "half-splits": {"splits": 0.5}, "2x-splits": {"splits": 2}}  # timed beside the default (x_smem 3 at
# M = 1 since v9, else 1); splits: x the planned count
V7_BATCHES = (1, 2, 4, 8)


def check_v7() -> bool:
    """The v7 fragment options against float64 (as check()), and one pdl launch replayed from a CUDA graph."""
    ok = True
    f2x2 = V7_OPTIONS["fold+xsmem2"]
    cases = [  # (m, n, k, symmetric, dtype, group, config)
        (1, 4096, 14336, True, torch.bfloat16, 128, {}),
        (8, 4100, 4104, False, torch.bfloat16, 256, {}),
        (3, 1000, 1000, True, torch.float16, 128, {"splits": 1}),
        (1, 4096, 14336, True, torch.bfloat16, 128, f2x2),
        (8, 4096, 4096, True, torch.bfloat16, 128, f2x2),
        (8, 14336, 4096, False, torch.bfloat16, 128, f2x2),
        (5, 1000, 1000, True, torch.float16, 1000, f2x2 | {"splits": 3}),
        (3, 334, 4100, False, torch.bfloat16, 128, f2x2 | {"splits": 5}),
        (7, 1000, 4104, False, torch.float16, 256, V7_OPTIONS["fold"]),
        (1, 4100, 4104, True, torch.bfloat16, 256, V7_OPTIONS["fold"]),
        (2, 1000, 1000, True, torch.bfloat16, 128, {"x_smem": 2}),
        (3, 1000, 4104, False, torch.float16, 128, V7_OPTIONS["xsmem1"] | {"splits": 3}),
        (4, 1000, 4104, False, torch.bfloat16, 128, V7_OPTIONS["fold+xsmem1"]),
        (6, 4100, 4104, True, torch.float16, 128, V7_OPTIONS["fold+xsmem1"] | {"splits": 2}),
        (1, 4096, 14336, True, torch.bfloat16, 128, f2x2 | {"splits": 2}),  # 56 blocks a split: not staged
        (8, 14336, 4096, True, torch.float16, 128, f2x2 | {"row_tiles": 2, "block_n": 128}),
        (16, 1000, 4104, True, torch.bfloat16, 128, V7_OPTIONS["fold"] | {"x_smem": 1}),  # block_m 16
        (1, 14336, 4096, True, torch.bfloat16, 128, {"x_smem": 3}),  # v9: one staged row of x (the M = 1 default)
        (1, 1000, 1000, False, torch.float16, 128, {"x_smem": 3}),  # ragged N and K, asymmetric
        (1, 334, 4100, True, torch.bfloat16, 256, {"x_smem": 3, "splits": 5}),
        (1, 4100, 4104, False, torch.bfloat16, 4104, {"x_smem": 3, "zero_by_sum": 1}),  # per-channel
        (1, 4096, 14336, True, torch.bfloat16, 128, {"x_smem": 3, "splits": 2}),  # 56 blocks a split: not staged
    ]
    for m, n, k, sym, dtype, group, cfg in cases:
        w = random_int4(n, k, sym, group=group)
        x = torch.randn(m, k, device="cuda").to(dtype)
        ref = x.double() @ t4.dequantize_int4(w).t()
        w = frag.pack_fragments(w)
        try:
            y = v6.int4_matmul_v6(x, w, "fragment", **cfg)
            again = v6.int4_matmul_v6(x, w, "fragment", **cfg)
        except Exception as exc:  # noqa: BLE001 — reported as a failed check, the rest still runs
            say(f"check v7 {cfg} M={m} N={n} K={k}: FAILED {type(exc).__name__}: {exc}"[:600])
            ok = False
            continue
        err, floor = rel_error(y, ref), rel_error(ref.to(dtype), ref)
        passed = err <= 2 * floor + 1e-4 and torch.equal(y, again)
        ok &= passed
        say(f"check v7 {cfg} M={m} N={n} K={k} sym={sym} {dtype} g{group}: err {err:.2e} (dtype rounding "
            f"{floor:.2e}) {'ok' if passed else 'FAILED'}")
    w = frag.pack_fragments(random_int4(4096, 14336, True))
    x = torch.randn(1, 14336, device="cuda", dtype=torch.bfloat16)
    try:
        eager = v6.int4_matmul_v6(x, w, **f2x2)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            v6.int4_matmul_v6(x, w, **f2x2)
        torch.cuda.current_stream().wait_stream(stream)
        graph, box = torch.cuda.CUDAGraph(), []
        with torch.cuda.graph(graph):
            box.append(v6.int4_matmul_v6(x, w, **f2x2))
        graph.replay()
        torch.cuda.synchronize()
        same = torch.equal(box[0], eager)
    except Exception as exc:  # noqa: BLE001
        say(f"check v7 graph: FAILED {type(exc).__name__}: {exc}"[:400])
        same = False
    ok &= same
    say(f"check v7 fold+xsmem2 (pdl) in a CUDA graph equals eager: {'ok' if same else 'FAILED'}")
    return ok


def v7_shape(n: int, k: int, rounds: int, finals: list[dict]) -> None:
    """bf16, the read floor, the fragment default and each V7_OPTIONS entry at V7_BATCHES, interleaved rounds."""
    sets = Sets(n, k, V7_BATCHES)
    nbytes = sets.int4[0].nbytes + 2 * (n + k)
    for m in V7_BATCHES:
        x = sets.x[m]
        entries = {"bf16": lambda x=x: time_per_call(lambda i: F.linear(x, sets.bf16[i]), len(sets.bf16)) * 1e6,
                   "read_floor": lambda: read_floor(nbytes)[0] * 1e6,
                   "frag_default": lambda m=m: sets.us(lambda a, w: v6.int4_matmul_v6(a, w, "fragment"), m, True)}
        planned = v6.launch_plan("fragment", m, n, k, v6.default_config("fragment", m), 132)["splits"]
        for name, cfg in V7_TIMED.items():
            cfg = cfg | ({"splits": max(1, int(planned * cfg["splits"]))} if "splits" in cfg else {})
            entries[name] = lambda m=m, cfg=cfg: sets.us(lambda a, w: v6.int4_matmul_v6(a, w, "fragment", **cfg),
                                                         m, True)
        samples: dict[str, list[float]] = {name: [] for name in entries}
        for _ in range(rounds):
            for name, fn in entries.items():
                try:
                    samples[name].append(fn())
                except Exception as exc:  # noqa: BLE001 — an option that fails to compile is reported, not timed
                    say(f"  {name} N={n} K={k} M={m}: {type(exc).__name__}: {exc}"[:300])
        row = {"n": n, "k": k, "m": m, "rounds": rounds}
        for name, values in samples.items():
            row[f"{name}_us"] = statistics.median(values) if values else float("nan")
            row[f"{name}_spread_us"] = max(values) - min(values) if values else float("nan")
        finals.append(row)
        say(f"v7 N={n} K={k} M={m}: " + ", ".join(
            f"{name} {row[name + '_us']:.2f} (spread {row[name + '_spread_us']:.2f})" for name in entries))


def v7_table(finals: list[dict]) -> str:
    names = ["frag_default", *V7_TIMED]
    lines = ["| N x K | M | bf16 us | read floor us | " + " | ".join(f"{n} us (x bf16)" for n in names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for r in finals:
        bf = r["bf16_us"]
        lines.append(f"| {r['n']}x{r['k']} | {r['m']} | {bf:.1f} | {r['read_floor_us']:.1f} | " + " | ".join(
            f"{r[n + '_us']:.1f} ({bf / r[n + '_us']:.2f}x)" for n in names) + " |")
    return "\n".join(lines)


def main_v7(out: Path, rounds: int) -> None:
    start = time.perf_counter()
    if not check_v7():
        say("CORRECTNESS FAILED: timings follow but are not results")
    finals: list[dict] = []
    for n, k in SHAPES:
        v7_shape(n, k, rounds, finals)
        torch.cuda.empty_cache()
    with open(out / "v7_table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(finals[0]))
        writer.writeheader()
        writer.writerows(finals)
    text = v7_table(finals)
    say(text)
    say(f"total {time.perf_counter() - start:.0f} s")
    (out / "v7_table.md").write_text(text + "\n")
    (out / "v7_log.txt").write_text("\n".join(LOG) + "\n")


class Sets:
    """Weight sets of one (N, K) rotating over ROTATE_BYTES (int4 and bf16) and x per batch."""

    def __init__(self, n: int, k: int, batches: tuple[int, ...] = BATCHES) -> None:
        self.n, self.k = n, k
        self.int4 = [random_int4(n, k, True) for _ in range(math.ceil(ROTATE_BYTES / (n * k / 2)))]
        self.frags = [frag.pack_fragments(w) for w in self.int4]
        self.bf16 = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
                     for _ in range(math.ceil(ROTATE_BYTES / (n * k * 2)))]
        self.x = {m: torch.randn(m, k, device="cuda", dtype=torch.bfloat16) for m in batches}

    def us(self, fn, m: int, fragments: bool = False) -> float:
        x, sets = self.x[m], self.frags if fragments else self.int4
        return time_per_call(lambda i: fn(x, sets[i]), len(sets)) * 1e6


def sweep_shape(n: int, k: int, rows: list[dict], sweep: bool) -> None:
    sets = Sets(n, k)
    nbytes = sets.int4[0].nbytes + 2 * (n + k)
    floor = read_floor(nbytes)[0] * 1e6
    for m in BATCHES:
        bf16 = time_per_call(lambda i, x=sets.x[m]: F.linear(x, sets.bf16[i]), len(sets.bf16)) * 1e6
        v5 = sets.us(lambda a, w: t4.int4_matmul(a, w), m)
        base = {"n": n, "k": k, "m": m, "bf16_us": bf16, "read_floor_us": floor, "v5_us": v5}
        say(f"N={n} K={k} M={m}: read floor {floor:.1f} us, bf16 {bf16:.1f} us, v5 {v5:.1f} us ({bf16 / v5:.2f}x)")
        timed: dict[str, list[float]] = {}
        for _ in range(2):  # two passes over the variants: the min of two measurements taken apart
            for name, kernel, cfg in variants(n, k, m) if sweep else []:
                try:
                    us = sets.us(lambda a, w, kernel=kernel, cfg=cfg: v6.int4_matmul_v6(a, w, kernel, **cfg), m,
                                 kernel == "fragment")
                except Exception as exc:  # noqa: BLE001 — a variant that fails to compile or launch is reported
                    say(f"  {name} {cfg}: {type(exc).__name__}: {exc}"[:300])
                    continue
                timed.setdefault(name, []).append(us)
        for name, kernel, cfg in variants(n, k, m) if sweep else []:
            if name not in timed:
                continue
            us = min(timed[name])
            full = v6.default_config(kernel, m) | cfg
            splits = v6.launch_plan(kernel, m, n, k, full, 132)["splits"]
            rows.append(base | {"variant": name, "kernel": kernel, "config": str(cfg), "splits": splits,
                                "v6_us": us, "v6_runs_us": " ".join(f"{t:.2f}" for t in timed[name])})
            say(f"  {name:22s} splits={splits:<3d} {us:6.1f} us ({' '.join(f'{t:.1f}' for t in timed[name])})  "
                f"{bf16 / us:.2f}x bf16  {us / floor:.2f}x floor  {v5 / us:.3f}x v5")


def final_entries(sets: Sets, m: int, nbytes: int) -> dict:
    """Seconds per call of each final-table entry at batch m, as functions."""
    x = sets.x[m]
    return {"bf16": lambda: time_per_call(lambda i: F.linear(x, sets.bf16[i]), len(sets.bf16)),
            "v5": lambda: sets.us(lambda a, w: t4.int4_matmul(a, w), m) / 1e6,
            "v6_mma": lambda: sets.us(lambda a, w: v6.int4_matmul_v6(a, w, "mma"), m) / 1e6,
            "v6_fragment": lambda: sets.us(lambda a, w: v6.int4_matmul_v6(a, w, "fragment"), m, True) / 1e6,
            "v6_fragment_rt2": lambda: sets.us(lambda a, w: v6.int4_matmul_v6(a, w, "fragment", **FRAGMENT_RT2), m,
                                               True) / 1e6,
            "read_floor": lambda: read_floor(nbytes)[0]}


def final_shape(n: int, k: int, rounds: int, finals: list[dict]) -> None:
    """bf16, v5's default, v6's mma and fragment defaults and the read floor, each timed once per round in
    interleaved rounds; the median (and the spread) of the rounds."""
    sets = Sets(n, k)
    nbytes = sets.int4[0].nbytes + 2 * (n + k)
    for m in BATCHES:
        entries = final_entries(sets, m, nbytes)
        samples: dict[str, list[float]] = {name: [] for name in entries}
        for _ in range(rounds):
            for name, fn in entries.items():
                samples[name].append(fn() * 1e6)
        row = {"n": n, "k": k, "m": m, "rounds": rounds}
        for name, values in samples.items():
            row[f"{name}_us"] = statistics.median(values)
            row[f"{name}_spread_us"] = max(values) - min(values)
        finals.append(row)
        say(f"final N={n} K={k} M={m}: " + ", ".join(
            f"{name} {row[name + '_us']:.1f} us (spread {row[name + '_spread_us']:.1f})" for name in entries))


def table(finals: list[dict]) -> str:
    lines = ["| N x K | M | bf16 us | read floor us | v5 us | v5 x | v6 mma us | v6 mma x | v6 fragment us | "
             "v6 fragment x | fragment rt2 us | fragment rt2 x | best v6 / floor | floor x |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in finals:
        bf, floor = r["bf16_us"], r["read_floor_us"]
        best = min(r["v6_mma_us"], r["v6_fragment_us"], r["v6_fragment_rt2_us"])
        lines.append(f"| {r['n']}x{r['k']} | {r['m']} | {bf:.1f} | {floor:.1f} | {r['v5_us']:.1f} | "
                     f"{bf / r['v5_us']:.2f} | {r['v6_mma_us']:.1f} | {bf / r['v6_mma_us']:.2f} | "
                     f"{r['v6_fragment_us']:.1f} | {bf / r['v6_fragment_us']:.2f} | {r['v6_fragment_rt2_us']:.1f} | "
                     f"{bf / r['v6_fragment_rt2_us']:.2f} | {best / floor:.2f} | {bf / floor:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-sweep", action="store_true", help="skip the variant sweep: checks and final table only")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the final table")
    parser.add_argument("--v7", action="store_true", help="v7's fragment options only: checks and their table")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    torch.manual_seed(0)
    say(f"{torch.cuda.get_device_name()} torch {torch.__version__} python {sys.version.split()[0]}")
    say(f"copy {copy_bandwidth() / 1e12:.2f} TB/s")
    if args.v7:
        main_v7(args.out, args.rounds)
        return
    if not check():
        say("CORRECTNESS FAILED: timings follow but are not results")
    if not args.no_sweep:
        rows: list[dict] = []
        for n, k in SHAPES:
            sweep_shape(n, k, rows, True)
            torch.cuda.empty_cache()
        with open(args.out / "v6_sweep.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    finals: list[dict] = []
    for n, k in SHAPES:
        final_shape(n, k, args.rounds, finals)
        torch.cuda.empty_cache()
    with open(args.out / "v6_table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(finals[0]))
        writer.writeheader()
        writer.writerows(finals)
    text = table(finals)
    say(text)
    say(f"total {time.perf_counter() - start:.0f} s")
    (args.out / "v6_table.md").write_text(text + "\n")
    (args.out / "v6_log.txt").write_text("\n".join(LOG) + "\n")


if __name__ == "__main__":
    main()
