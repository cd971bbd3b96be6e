"""Attention decode on one GPU: correctness against float64, then achieved bandwidth beside the device's copy.

    PYTHONPATH=. python scripts/bench_decode.py --out results/decode-bench

Measures (bf16, 32 query heads of 128, 16-token pages):
  copy       a 2 GiB float32 device-to-device copy (bytes read + written ÷ time, as `membench calibrate`
             measures it): the ceiling decode is held to; a read-only sum beside it
  tune       Triton kernel configs (tile, warps, stages, table prefetch, grid order) on three cases, and
             a sweep of splits at batch 1: the evidence for triton_decode's defaults
             (the tables below use the defaults, as the registered implementations do)
  bandwidth  MHA and GQA-8 at L = 8K, 32K, 128K with batch chosen so the cache is >= 1 GiB (>> the 50 MB
             L2): torch_gqa, sdpa, paged_gather, triton_split, triton_paged; GB/s = KV bytes read ÷ time
  split      batch 1 (cache 16-256 MB, rotated over input sets to >= 256 MB): Triton with splits = 1 vs
             auto, torch split_kv (8 chunks in series) vs torch_gqa
  mla        MLA decompress vs absorbed (torch), DeepSeek-V3 dimensions, 128 heads at batch 1 and 16 at 8
Every timing replays a CUDA graph of many calls that cycle through the input sets (no CPU launch gaps),
timed with CUDA events; the median of 5 replays. Every implementation is first checked on fresh random
inputs: ‖out − ref‖/‖ref‖ against the float64 reference must be <= 2 x torch_gqa's error + bf16 eps.
Imports only the decode modules (not the whole registry), so other unfinished workloads cannot break it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from reference_impls.kernels import decode
from reference_impls.kernels import triton_decode as tdecode
from workloads.long_context.attention_decode import AttentionDecode

DTYPE = "bfloat16"
EPS = torch.finfo(torch.bfloat16).eps
HEADS, HEAD_DIM, PAGE = 32, 128, 16
LAYOUTS = {"MHA": 32, "GQA-8": 4}  # kv heads
BANDWIDTH_BATCH = {("MHA", 8192): 8, ("MHA", 32768): 2, ("MHA", 131072): 1,
                   ("GQA-8", 8192): 64, ("GQA-8", 32768): 16, ("GQA-8", 131072): 4}
BASE_CONFIG = {"block_n": 64, "num_warps": 4, "num_stages": 3, "prefetch_table": True, "heads_first": True}
TUNE_CONFIGS = [BASE_CONFIG, BASE_CONFIG | {"prefetch_table": False}, BASE_CONFIG | {"heads_first": False},
                BASE_CONFIG | {"num_stages": 4}, BASE_CONFIG | {"block_n": 128}, BASE_CONFIG | {"num_warps": 8},
                BASE_CONFIG | {"block_n": 32, "num_stages": 5}]
TUNE_CASES = [("MHA", 32768, 2), ("GQA-8", 32768, 16), ("GQA-8", 131072, 1)]  # (layout, kv_len, batch)
WAVES = (0.5, 0.75, 1, 2, 4, 8)  # splits sweep at batch 1: programs = this many x the SM count
MLA_CASES = [(128, 1, 8192), (128, 1, 32768), (128, 1, 131072), (16, 8, 32768)]  # (heads, batch, kv_len)
ROTATE_BYTES = 256 * 2**20  # batch-1 caches are rotated over sets totalling at least this


def params(layout: str, kv_len: int, batch: int, splits: int = 0) -> dict:
    return {"kv_len": kv_len, "batch": batch, "heads": HEADS, "kv_heads": LAYOUTS[layout], "head_dim": HEAD_DIM,
            "dtype": DTYPE, "page_size": PAGE, "splits": splits}


def impls(config: dict) -> dict[str, Callable[[dict, dict], torch.Tensor]]:
    return {
        "torch_gqa": lambda x, p: decode.gqa_decode(x["q"], x["k"], x["v"]),
        "sdpa": lambda x, p: decode.sdpa_decode(x["q"], x["k"], x["v"]),
        "paged_gather": lambda x, p: decode.paged_gather_decode(x["q"], x["k_pages"], x["v_pages"],
                                                                x["block_table"], p["kv_len"]),
        "split_kv": lambda x, p: decode.split_kv_decode(x["q"], x["k"], x["v"], p["splits"] or 8),
        "triton_split": lambda x, p: tdecode.triton_split_decode(x["q"], x["k"], x["v"], splits=p["splits"],
                                                                 **config.get("split", {})),
        "triton_paged": lambda x, p: tdecode.triton_paged_decode(x["q"], x["k_pages"], x["v_pages"],
                                                                 x["block_table"], p["kv_len"], splits=p["splits"],
                                                                 **config.get("paged", {})),
    }


def event_ms(fn: Callable[[], object]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def time_per_call(call: Callable[[dict], object], sets: list[dict]) -> tuple[float, str]:
    """Seconds per call: a CUDA graph of `reps` calls cycling through `sets`, replayed 5 times (median).
    Falls back to an eager loop (events around it) if the implementation cannot be captured."""
    for s in sets:
        call(s)
    torch.cuda.synchronize()
    once = min(event_ms(lambda: call(sets[0])) for _ in range(3))
    reps = max(len(sets), min(400, math.ceil(5.0 / max(once, 1e-3))))  # ~5 ms of work per replay
    try:
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            call(sets[0])  # warm on the side stream, as torch recommends before capture
        torch.cuda.current_stream().wait_stream(stream)
        with torch.cuda.graph(graph):
            for i in range(reps):
                call(sets[i % len(sets)])
        graph.replay()
        torch.cuda.synchronize()
        samples, how = [event_ms(graph.replay) / reps for _ in range(5)], "graph"
        del graph
    except Exception:  # noqa: BLE001 — capture is an optimization; time eagerly instead
        torch.cuda.synchronize()
        samples = [event_ms(lambda: [call(sets[i % len(sets)]) for i in range(reps)]) / reps for _ in range(5)]
        how = "eager"
    return statistics.median(samples) / 1e3, how


def copy_bandwidth(n_bytes: int = 2 * 2**30) -> dict:
    """As `membench calibrate` measures it: a float32 device-to-device copy (bytes read + written) and a sum
    (bytes read), each timed eagerly with events around 10 calls; a graph would turn the copy into a
    copy-engine memcpy node, which is slower than the copy kernel."""
    src = torch.rand(n_bytes // 4, device="cuda")
    dst = torch.empty_like(src)
    found = {"bytes": n_bytes}
    for name, fn, moved in (("copy", lambda: dst.copy_(src), 2 * n_bytes), ("read", lambda: src.sum(), n_bytes)):
        fn()
        torch.cuda.synchronize()
        seconds = statistics.median(event_ms(lambda f=fn: [f() for _ in range(10)]) / 10 for _ in range(5)) / 1e3
        found[f"{name}_seconds"], found[f"{name}_bytes_per_s"] = seconds, moved / seconds
    return found


def input_sets(p: dict, min_bytes: int) -> list[dict]:
    workload = AttentionDecode()
    first = workload.inputs(p, "cuda", 0)
    n = max(1, math.ceil(min_bytes / workload.input_bytes(first)))
    return [first] + [workload.inputs(p, "cuda", seed) for seed in range(1, n)]


def check(names: list[str], table: dict, p: dict) -> dict[str, dict]:
    """Fresh inputs (seed 1000): each implementation's error against float64 and the 2 x baseline rule."""
    x = AttentionDecode().inputs(p, "cuda", 1000)
    ref = decode.decode_reference(x["q"], x["k"], x["v"])
    base = float((decode.gqa_decode(x["q"], x["k"], x["v"]).double() - ref).norm() / ref.norm())
    found = {}
    for name in names:
        try:
            out = table[name](x, p)
            err = float((out.double() - ref).norm() / ref.norm())
            found[name] = {"rel_err": err, "ok": bool(math.isfinite(err) and err <= 2 * base + EPS)}
        except Exception as exc:  # noqa: BLE001 — recorded; timing is attempted anyway and says so
            found[name] = {"rel_err": float("nan"), "ok": False, "check_error": f"{type(exc).__name__}: {exc}"[:300]}
    del x, ref
    return found


def measure(layout: str, kv_len: int, batch: int, names: list[str], table: dict, min_bytes: int,
            splits: int = 0) -> list[dict]:
    p = params(layout, kv_len, batch, splits)
    kv_bytes = 2 * batch * LAYOUTS[layout] * kv_len * HEAD_DIM * 2
    verdicts = check(names, table, p)
    sets = input_sets(p, min_bytes)
    rows = []
    for name in names:
        row = {"layout": layout, "kv_len": kv_len, "batch": batch, "impl": name, "splits": splits,
               "kv_bytes": kv_bytes, "input_sets": len(sets), **verdicts[name]}
        if name.startswith("triton"):
            slots = tdecode.device_slots(torch.device("cuda"), "paged" if name == "triton_paged" else "contiguous")
            row["splits_used"] = splits or tdecode.auto_splits(batch, LAYOUTS[layout], kv_len, slots)
        try:
            seconds, how = time_per_call(lambda s, f=table[name], p=p: f(s, p), sets)
            row |= {"seconds": seconds, "timing": how, "kv_bytes_per_s": kv_bytes / seconds}
        except Exception as exc:  # noqa: BLE001 — one failing implementation must not lose the rest
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        rows.append(row)
        print(json.dumps(row), flush=True)
    del sets
    torch.cuda.empty_cache()
    return rows


def tune() -> list[dict]:
    """Each TUNE_CONFIG on TUNE_CASES, then a sweep of splits at batch 1 (WAVES x the SM count programs, and
    auto_splits' choice). The evidence for triton_decode's DEFAULT_CONFIG, PAGED_CONFIG and auto_splits."""
    rows = []

    def record(row: dict, fn: Callable, sets: list[dict], p: dict) -> None:
        seconds, _ = time_per_call(lambda s: fn(s, p), sets)
        kv_bytes = 2 * p["batch"] * p["kv_heads"] * p["kv_len"] * HEAD_DIM * 2
        rows.append(row | {"seconds": seconds, "kv_bytes_per_s": kv_bytes / seconds})
        print(json.dumps(rows[-1]), flush=True)

    for layout, kv_len, batch in TUNE_CASES:
        p = params(layout, kv_len, batch)
        sets = input_sets(p, ROTATE_BYTES)
        for config in TUNE_CONFIGS:
            for kernel in ("split", "paged"):
                record({"layout": layout, "kv_len": kv_len, "batch": batch, "kernel": kernel, **config},
                       impls({kernel: config})[f"triton_{kernel}"], sets, p)
        del sets
        torch.cuda.empty_cache()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for layout in LAYOUTS:
        for kv_len in (8192, 32768, 131072):
            auto = {kernel: tdecode.auto_splits(1, LAYOUTS[layout], kv_len, tdecode.device_slots(
                torch.device("cuda"), "paged" if kernel == "paged" else "contiguous")) for kernel in ("split", "paged")}
            sweep = sorted({max(1, round(w * sms / LAYOUTS[layout])) for w in WAVES} | set(auto.values()))
            sets = input_sets(params(layout, kv_len, 1), ROTATE_BYTES)
            for splits in sweep:
                p = params(layout, kv_len, 1, splits)
                for kernel in ("split", "paged"):
                    record({"layout": layout, "kv_len": kv_len, "batch": 1, "kernel": kernel, "splits": splits,
                            "auto": splits == auto[kernel]}, impls({})[f"triton_{kernel}"], sets, p)
            del sets
    return rows


def mla_rows() -> list[dict]:
    """MLA decompress vs absorbed (torch): error against float64 and time, DeepSeek-V3 dimensions, bf16."""
    from reference_impls.kernels import mla_decode as mla
    from workloads.long_context.mla_decode import INPUT_ORDER, MlaDecode

    rows = []
    for heads, batch, kv_len in MLA_CASES:
        p = {"kv_len": kv_len, "batch": batch, "heads": heads, "kv_lora_rank": 512, "rope_dim": 64,
             "qk_nope_dim": 128, "v_head_dim": 128, "dtype": DTYPE}
        fresh = MlaDecode().inputs(p, "cuda", 1000)
        args = [fresh[n] for n in INPUT_ORDER]
        ref = mla.mla_reference(*args)
        errors = {name: float((fn(*args).double() - ref).norm() / ref.norm())
                  for name, fn in (("decompress", mla.mla_decompress), ("absorbed", mla.mla_absorbed))}
        del fresh, args, ref
        sets = [MlaDecode().inputs(p, "cuda", seed) for seed in range(2)]
        kv_bytes = batch * kv_len * (512 + 64) * 2
        for name, fn in (("decompress", mla.mla_decompress), ("absorbed", mla.mla_absorbed)):
            seconds, how = time_per_call(lambda s, f=fn: f(*(s[n] for n in INPUT_ORDER)), sets)
            rows.append({"heads": heads, "batch": batch, "kv_len": kv_len, "impl": name, "seconds": seconds,
                         "timing": how, "kv_bytes": kv_bytes, "kv_bytes_per_s": kv_bytes / seconds,
                         "rel_err": errors[name], "ok": errors[name] <= 2 * errors["decompress"] + EPS})
            print(json.dumps(rows[-1]), flush=True)
        del sets
        torch.cuda.empty_cache()
    return rows


def table_text(copy: dict, rows: list[dict], mla: list[dict]) -> str:
    ceiling = copy["copy_bytes_per_s"]
    lines = [f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}",
             f"copy bandwidth (float32 2 GiB, read + write): {ceiling / 1e12:.3f} TB/s; "
             f"read-only (sum): {copy['read_bytes_per_s'] / 1e12:.3f} TB/s",
             f"triton configs: contiguous {tdecode.DEFAULT_CONFIG}, paged {tdecode.PAGED_CONFIG}; auto splits: "
             f"wave rule over {tdecode.PROGRAMS_PER_SM} programs per SM",
             f"{'layout':7} {'L':>7} {'batch':>5} {'impl':13} {'splits':>6} {'KV MB':>8} {'us':>9} "
             f"{'KV GB/s':>8} {'x copy':>6} {'rel_err':>9} ok"]
    for r in rows:
        if "seconds" not in r:
            lines.append(f"{r['layout']:7} {r['kv_len']:>7} {r['batch']:>5} {r['impl']:13} FAILED {r.get('error')}")
            continue
        splits = r.get("splits_used", r["splits"] or "-")
        lines.append(f"{r['layout']:7} {r['kv_len']:>7} {r['batch']:>5} {r['impl']:13} {splits!s:>6} "
                     f"{r['kv_bytes'] / 1e6:>8.1f} {r['seconds'] * 1e6:>9.1f} {r['kv_bytes_per_s'] / 1e9:>8.0f} "
                     f"{r['kv_bytes_per_s'] / ceiling:>6.2f} {r['rel_err']:>9.2e} {'yes' if r['ok'] else 'NO'}")
    lines.append("MLA (bf16, R=512, Dr=64, Dn=Dv=128): KV GB/s counts the latent + rope cache read once")
    for r in mla:
        lines.append(f"MLA-h{r['heads']:<3} {r['kv_len']:>7} {r['batch']:>5} {r['impl']:13} {'-':>6} "
                     f"{r['kv_bytes'] / 1e6:>8.1f} {r['seconds'] * 1e6:>9.1f} {r['kv_bytes_per_s'] / 1e9:>8.0f} "
                     f"{r['kv_bytes_per_s'] / ceiling:>6.2f} {r['rel_err']:>9.2e} {'yes' if r['ok'] else 'NO'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for decode_bench.json and .txt")
    parser.add_argument("--no-tune", action="store_true", help="skip the tune section")
    parser.add_argument("--tune-only", action="store_true", help="copy bandwidth and the tune section only")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    t0 = time.time()
    copy = copy_bandwidth()
    print(json.dumps({"copy": copy}), flush=True)
    tune_rows = [] if args.no_tune else tune()
    if args.tune_only:
        (args.out / "decode_tune.json").write_text(json.dumps({"copy": copy, "tune": tune_rows}, indent=1))
        return
    table = impls({})
    rows = []
    bandwidth_impls = ["torch_gqa", "sdpa", "paged_gather", "triton_split", "triton_paged"]
    for (layout, kv_len), batch in BANDWIDTH_BATCH.items():
        rows += measure(layout, kv_len, batch, bandwidth_impls, table, 0)
    for layout in LAYOUTS:
        for kv_len in (8192, 32768, 131072):
            rows += measure(layout, kv_len, 1, ["triton_split", "triton_paged"], table, ROTATE_BYTES, splits=1)
            rows += measure(layout, kv_len, 1, ["torch_gqa", "split_kv", "triton_split", "triton_paged"], table,
                            ROTATE_BYTES)
    mla = mla_rows()
    text = table_text(copy, rows, mla)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "copy": copy,
              "configs": {"contiguous": tdecode.DEFAULT_CONFIG, "paged": tdecode.PAGED_CONFIG,
                          "programs_per_sm": tdecode.PROGRAMS_PER_SM},
              "tune": tune_rows, "rows": rows, "mla": mla, "wall_s": time.time() - t0}
    (args.out / "decode_bench.json").write_text(json.dumps(result, indent=1))
    (args.out / "decode_bench.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
