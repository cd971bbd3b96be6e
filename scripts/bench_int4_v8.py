"""int4 W4A16 v8 (the stream kernel, triton_int4_stream*.py) against bf16, the v7 fragment kernel and the read
floor, on one GPU.

    PYTHONPATH=. python scripts/bench_int4_v8.py --out results/published/h100-quant-matmul/v8 [--rounds 3]

1. check: the stream kernel against float64 on fresh random inputs (sym / asym, bf16 / fp16, groups 128..K, ragged
   N, M = 1..8, tiles split over 2 to 14 programs, several configs): error <= 2 x the error of rounding the exact
   product to the dtype (+ 1e-4), a repeat bit-identical, the tile counters back at 0 after every call, and a pdl
   launch replayed from a CUDA graph equal to eager.
2. configs (M = 1, the three shapes): STREAM_SWEEP, each the median of --rounds interleaved rounds beside bf16, the
   fragment default and the read floor.
3. batches: bf16, fragment and stream defaults at M = 1, 2, 4, 8, interleaved rounds.
Timing as bench_quant_matmul.time_per_call (a CUDA graph of calls cycling through weight sets over 200 MB = 4x
L2, median of 5 replays). Writes v8_log.txt, v8_table.csv and v8_table.md to --out.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from bench_int4_v6 import Sets  # noqa: E402
from bench_quant_matmul import SHAPES, random_int4, read_floor, rel_error, time_per_call  # noqa: E402

from reference_impls.kernels.quant import triton_int4 as t4  # noqa: E402
from reference_impls.kernels.quant import triton_int4_fragment as frag  # noqa: E402
from reference_impls.kernels.quant import triton_int4_stream as st  # noqa: E402
from reference_impls.kernels.quant import triton_int4_v6 as v6  # noqa: E402

STREAM_SWEEP = {"w8 r8 x2": {}, "w4 r6 x4": {"num_warps": 4, "ring": 6, "ctas_per_sm": 4}}
STAGED = {"w_smem": 1}
STAGED_SWEEP = {"staged bn64": STAGED, "staged bn32 w2": STAGED | {"block_n": 32, "num_warps": 2},
                "staged bn64 2x-splits": STAGED | {"splits": 2.0},
                "staged bn32 w2 2x-splits": STAGED | {"block_n": 32, "num_warps": 2, "splits": 2.0},
                "staged bn32 w2 0.5x-splits": STAGED | {"block_n": 32, "num_warps": 2, "splits": 0.5},
                "staged bn128 w8 2x-splits": STAGED | {"block_n": 128, "num_warps": 8, "splits": 2.0},
                "staged bn16 w1": STAGED | {"block_n": 16, "num_warps": 1}}
BATCHES = (1, 2, 4, 8)
LOG: list[str] = []


def say(line: str) -> None:
    print(line, flush=True)
    LOG.append(line)


def counters_clear() -> bool:
    return all(int(c.abs().sum()) == 0 for c in st._COUNTERS.values())


def check() -> bool:
    ok = True
    cases = [  # (m, n, k, symmetric, dtype, group, config)
        (1, 4096, 14336, True, torch.bfloat16, 128, {}),
        (1, 4096, 4096, False, torch.bfloat16, 128, {}),
        (8, 14336, 4096, True, torch.bfloat16, 128, {}),
        (3, 1000, 2048, True, torch.float16, 128, {}),
        (5, 1000, 4096, False, torch.float16, 4096, {}),
        (1, 334, 1024, True, torch.bfloat16, 256, {}),
        (2, 32, 14336, False, torch.bfloat16, 128, {}),  # 2 tiles of 14 stages over 28 programs: 14 per tile
        (7, 48, 14336, True, torch.float16, 128, {"num_warps": 16, "ring": 3}),
        (1, 4096, 14336, True, torch.bfloat16, 128, {"num_warps": 16, "ring": 6, "ctas_per_sm": 1}),
        (4, 4100, 4096, False, torch.bfloat16, 512, {"num_warps": 4, "ring": 2, "ctas_per_sm": 3}),
        (1, 4096, 4096, True, torch.bfloat16, 128, {"pdl": 0, "ring": 12, "ctas_per_sm": 1}),
        (6, 777, 3072, False, torch.bfloat16, 3072, {"num_warps": 8, "ring": 5}),
    ]
    for m, n, k, sym, dtype, group, cfg in cases:
        w = random_int4(n, k, sym, group=group)
        x = torch.randn(m, k, device="cuda").to(dtype)
        ref = x.double() @ t4.dequantize_int4(w).t()
        wf = frag.pack_fragments(w)
        plan = st.stream_plan(n, k, (st.STREAM_CONFIG | cfg)["num_warps"], (st.STREAM_CONFIG | cfg)["ctas_per_sm"],
                              torch.cuda.get_device_properties(0).multi_processor_count)
        try:
            y = v6.int4_matmul_v6(x, wf, "stream", **cfg)
            again = v6.int4_matmul_v6(x, wf, "stream", **cfg)
            torch.cuda.synchronize()
        except Exception as exc:  # noqa: BLE001 — reported as a failed check, the rest still runs
            say(f"check stream {cfg} M={m} N={n} K={k}: FAILED {type(exc).__name__}: {exc}"[:800])
            ok = False
            continue
        err, floor = rel_error(y, ref), rel_error(ref.to(dtype), ref)
        clear = counters_clear()
        passed = err <= 2 * floor + 1e-4 and torch.equal(y, again) and clear
        ok &= passed
        say(f"check stream {cfg} M={m} N={n} K={k} sym={sym} {dtype} g{group} (grid {plan['grid']}, "
            f"{plan['stages']} stages): err {err:.2e} (dtype rounding {floor:.2e}), repeat "
            f"{'equal' if torch.equal(y, again) else 'DIFFERS'}, counters {'0' if clear else 'NOT 0'} "
            f"{'ok' if passed else 'FAILED'}")
    staged_cases = [  # (m, n, k, symmetric, dtype, group, config)
        (1, 4096, 14336, True, torch.bfloat16, 128, STAGED),
        (1, 4096, 4096, False, torch.bfloat16, 128, STAGED),
        (8, 14336, 4096, True, torch.bfloat16, 128, STAGED | {"block_n": 32, "num_warps": 2}),
        (3, 1000, 1000, True, torch.float16, 128, STAGED | {"splits": 3}),
        (5, 1000, 4104, False, torch.float16, 4104, STAGED | {"block_n": 32, "num_warps": 2}),
        (2, 334, 4100, False, torch.bfloat16, 256, STAGED | {"splits": 5}),
        (1, 4096, 14336, True, torch.bfloat16, 128, STAGED | {"block_n": 128, "num_warps": 8, "splits": 32}),
        (7, 4100, 4104, True, torch.bfloat16, 128, STAGED | {"block_n": 16, "num_warps": 1}),
    ]
    for m, n, k, sym, dtype, group, cfg in staged_cases:
        w = random_int4(n, k, sym, group=group)
        x = torch.randn(m, k, device="cuda").to(dtype)
        ref = x.double() @ t4.dequantize_int4(w).t()
        wf = frag.pack_fragments(w)
        try:
            y = v6.int4_matmul_v6(x, wf, "fragment", **cfg)
            again = v6.int4_matmul_v6(x, wf, "fragment", **cfg)
        except Exception as exc:  # noqa: BLE001
            say(f"check staged {cfg} M={m} N={n} K={k}: FAILED {type(exc).__name__}: {exc}"[:800])
            ok = False
            continue
        err, floor = rel_error(y, ref), rel_error(ref.to(dtype), ref)
        passed = err <= 2 * floor + 1e-4 and torch.equal(y, again)
        ok &= passed
        say(f"check staged {cfg} M={m} N={n} K={k} sym={sym} {dtype} g{group}: err {err:.2e} (dtype rounding "
            f"{floor:.2e}) {'ok' if passed else 'FAILED'}")
    w = frag.pack_fragments(random_int4(4096, 14336, True))
    x = torch.randn(1, 14336, device="cuda", dtype=torch.bfloat16)
    try:
        eager = v6.int4_matmul_v6(x, w, "fragment", **STAGED)
        box = []
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            v6.int4_matmul_v6(x, w, "fragment", **STAGED)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            box.append(v6.int4_matmul_v6(x, w, "fragment", **STAGED))
        graph.replay()
        torch.cuda.synchronize()
        same = torch.equal(box[0], eager)
    except Exception as exc:  # noqa: BLE001
        say(f"check staged graph: FAILED {type(exc).__name__}: {exc}"[:600])
        same = False
    ok &= same
    say(f"check staged (pdl) in a CUDA graph equals eager: {'ok' if same else 'FAILED'}")
    try:
        eager = v6.int4_matmul_v6(x, w, "stream")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            v6.int4_matmul_v6(x, w, "stream")
        torch.cuda.current_stream().wait_stream(side)
        graph, box = torch.cuda.CUDAGraph(), []
        with torch.cuda.graph(graph):
            for _ in range(3):
                box.append(v6.int4_matmul_v6(x, w, "stream"))
        for _ in range(2):
            graph.replay()
        torch.cuda.synchronize()
        same = all(torch.equal(b, eager) for b in box) and counters_clear()
    except Exception as exc:  # noqa: BLE001
        say(f"check stream graph: FAILED {type(exc).__name__}: {exc}"[:600])
        same = False
    ok &= same
    say(f"check stream (pdl) x3 in a CUDA graph, replayed twice, equals eager, counters 0: "
        f"{'ok' if same else 'FAILED'}")
    return ok


def timed(entries: dict, rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in entries}
    for _ in range(rounds):
        for name, fn in entries.items():
            try:
                samples[name].append(fn())
            except Exception as exc:  # noqa: BLE001 — a config that fails is reported, not timed
                say(f"  {name}: {type(exc).__name__}: {exc}"[:400])
    return samples


def shape_rows(n: int, k: int, rounds: int, rows: list[dict]) -> None:
    sets = Sets(n, k, BATCHES)
    nbytes = sets.int4[0].nbytes + 2 * (n + k)
    for m in BATCHES:
        x = sets.x[m]
        entries = {"bf16": lambda x=x: time_per_call(lambda i: F.linear(x, sets.bf16[i]), len(sets.bf16)) * 1e6,
                   "fragment": lambda m=m: sets.us(lambda a, w: v6.int4_matmul_v6(a, w, "fragment"), m, True)}
        if m == 1:
            entries["read_floor"] = lambda: read_floor(nbytes)[0] * 1e6
        sweep = STREAM_SWEEP if m == 1 else {"w8 r8 x2": {}}
        for name, cfg in sweep.items():
            entries[f"stream {name}"] = lambda m=m, cfg=cfg: sets.us(
                lambda a, w: v6.int4_matmul_v6(a, w, "stream", **cfg), m, True)
        for name, cfg in STAGED_SWEEP.items():
            if "splits" in cfg:  # a multiple of the planned count for the config's block_n and warps
                base = v6.default_config("fragment", m) | {key: v for key, v in cfg.items() if key != "splits"}
                cfg = cfg | {"splits": max(1, round(v6.launch_plan("fragment", m, n, k, base, 132)["splits"]
                                                    * cfg["splits"]))}
            entries[name] = lambda m=m, cfg=cfg: sets.us(
                lambda a, w: v6.int4_matmul_v6(a, w, "fragment", **cfg), m, True)
        samples = timed(entries, rounds)
        row = {"n": n, "k": k, "m": m, "rounds": rounds}
        for name, values in samples.items():
            row[f"{name}_us"] = statistics.median(values) if values else float("nan")
            row[f"{name}_spread_us"] = max(values) - min(values) if values else float("nan")
        rows.append(row)
        bf = row["bf16_us"]
        say(f"N={n} K={k} M={m}: " + ", ".join(
            f"{name} {row[name + '_us']:.2f} ({bf / row[name + '_us']:.2f}x, spread {row[name + '_spread_us']:.2f})"
            for name in samples))


def table(rows: list[dict]) -> str:
    lines = ["| N x K | M | bf16 us | read floor us | fragment (v7) us | stream (v8) us | stream x bf16 | best stream "
             "config | best us | best x bf16 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bf = r["bf16_us"]
        streams = {k[len("stream "):-3]: v for k, v in r.items() if k.startswith("stream ") and k.endswith("_us")
                   and not k.endswith("spread_us")}
        best = min(streams, key=lambda name: streams[name])
        floor = f"{r['read_floor_us']:.1f}" if "read_floor_us" in r else ""
        lines.append(f"| {r['n']}x{r['k']} | {r['m']} | {bf:.1f} | {floor} | {r['fragment_us']:.1f} | "
                     f"{r['stream w8 r8 x2_us']:.1f} | {bf / r['stream w8 r8 x2_us']:.2f}x | {best} | "
                     f"{streams[best]:.1f} | {bf / streams[best]:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-check", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    say(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    if not args.no_check and not check():
        say("CORRECTNESS FAILED: timings follow but are not results")
    rows: list[dict] = []
    for n, k in SHAPES:
        shape_rows(n, k, args.rounds, rows)
        torch.cuda.empty_cache()
    fields = sorted({key for r in rows for key in r}, key=lambda key: list(rows[0]).index(key)
                    if key in rows[0] else 999)
    with open(args.out / "v8_table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    text = table(rows)
    say(text)
    say(f"total {time.perf_counter() - start:.0f} s")
    (args.out / "v8_table.md").write_text(text + "\n")
    (args.out / "v8_log.txt").write_text("\n".join(LOG) + "\n")


if __name__ == "__main__":
    main()
