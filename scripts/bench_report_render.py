"""How long rendering N records into the report site takes (issue 8 asks for 10,000 in under 10 s).

Writes synthetic runs in the store's record format (schema 1, as harness.store reads them): two runs on
two devices, 8 workloads with 5 implementations each swept over 8 values of `seq` at several other
parameter combinations, with a few failed and invalid cases and a quality/bytes pair for the pareto
charts. Then it times loading (harness.store.load) and building the site (reports.build_site) apart.

    .venv/bin/python scripts/bench_report_render.py --records 10000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import metrics  # noqa: E402
from harness.store import load, load_manifests  # noqa: E402
from reports import build_site  # noqa: E402

IMPLS = ("naive", "chunked", "flash", "paged", "quantized")
SEQS = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
DEVICES = (("cpu", "2026-01-01T00-00-00Z-cpu0"), ("cuda", "2026-01-02T00-00-00Z-gpu0"))
BUILD_TIME = "2026-01-01T00:00:00+00:00"


def workload_names(n: int) -> list[str]:
    return [f"synthetic_{i:02d}" for i in range(n)]


def record(run: str, device: str, workload: str, impl: str, params: dict, rng: random.Random) -> dict:
    """One schema-1 record with latency, memory, energy, a quality metric and a storage size."""
    seq = params["seq"]
    scale = 1 + IMPLS.index(impl) * 0.3
    latency = 1e-6 * seq * scale * (0.05 if device == "cuda" else 1.0) * rng.uniform(0.9, 1.1)
    status = "failed" if rng.random() < 0.01 else "ok"
    samples = sorted(latency * rng.uniform(0.95, 1.05) for _ in range(5))
    bits = (16, 8, 4, 3, 2)[IMPLS.index(impl)]
    metrics_ = {} if status != "ok" else {
        "latency_s": {"value": samples[2], "unit": "s", "source": "perf_counter_ns", "samples": samples,
                      "iqr": samples[3] - samples[1], "n": 5},
        "peak_memory_bytes": {"value": float(seq * 4096 * scale), "unit": "B", "source": "isolated_rss"},
        "peak_memory_overhead_bytes": {"value": float(seq * 2048 * scale), "unit": "B", "source": "isolated_rss"},
        "quality.rel_l2_error": {"value": 2.0 ** -bits * rng.uniform(0.8, 1.2), "unit": "1", "source": "check"},
        "quant.effective_bits": {"value": float(bits) + 0.125, "unit": "bit", "source": "counted"},
    }
    unmeasured = {} if device == "cuda" else {"energy_j": "no energy counter on this CPU"}
    if device == "cuda" and status == "ok":
        metrics_["energy_j"] = {"value": latency * 300, "unit": "J", "source": "nvml_total_energy", "n": 5}
    invalid = status == "ok" and rng.random() < 0.01
    pstr = ",".join(f"{k}={v}" for k, v in params.items())
    return {"schema": 1, "run": run, "case": f"synthetic/{workload}/{impl}[{pstr}]@{device}", "family": "synthetic",
            "workload": workload, "impl": impl, "params": params, "device": device, "seed": 0, "status": status,
            "error": "RuntimeError: synthetic failure" if status != "ok" else None, "workload_version": "1",
            "metrics": metrics_, "unmeasured": unmeasured,
            "model": {"flops": 4.0 * seq * seq * 64, "bytes": {"q": 2.0 * seq * 64, "out": 2.0 * seq * 64}},
            "validity": {"ok": not invalid, "reasons": ["synthetic tolerance exceeded"] if invalid else []}}


def write_runs(root: Path, n_records: int, seed: int = 0) -> list[Path]:
    """Two run folders holding `n_records` records together (half per device)."""
    rng = random.Random(seed)
    per_device = n_records // len(DEVICES)
    per_config = len(IMPLS) * len(SEQS)
    workloads = workload_names(8)
    folders = []
    for device, run in DEVICES:
        folder = root / run
        folder.mkdir(parents=True)
        lines, n = [], 0
        while n < per_device:
            workload = workloads[(n // per_config) % len(workloads)]
            heads = 1 + (n // (per_config * len(workloads)))
            for impl in IMPLS:
                for seq in SEQS:
                    if n < per_device:
                        lines.append(json.dumps(record(run, device, workload, impl, {"seq": seq, "heads": heads},
                                                       rng)))
                        n += 1
        (folder / "records.jsonl").write_text("\n".join(lines) + "\n")
        manifest = {"run": run, "suite": {"name": "synthetic", "description": "render benchmark"},
                    "started_at": run[:19], "finished_at": run[:19], "counts": {"ok": n},
                    "environment": {"python": "3.12", "cpu": {"model": "Synthetic CPU", "cores": 2},
                                    "gpu": {"name": "Synthetic GPU"} if device == "cuda" else None,
                                    "git": {"commit": "0" * 40, "dirty": False}, "packages": {"torch": "2.13"}}}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        folders.append(folder)
    return folders


def workload_info() -> dict[str, dict]:
    return {w: {"family": "synthetic", "sweep_param": "seq", "primary_metric": "latency_s",
                "params": ["seq", "heads"], "description": f"Synthetic workload {w}."} for w in workload_names(8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="Also leave the last site in this folder.")
    args = parser.parse_args()
    metrics.declare("quant.effective_bits", "bit", "lower", "Effective bits", deterministic=True)
    root = Path(tempfile.mkdtemp(prefix="membench-render-bench-"))
    try:
        folders = write_runs(root / "runs", args.records)
        specs = metrics.all_specs()
        times = []
        for i in range(args.repeat):
            out = root / f"site{i}"
            c0, t0 = time.process_time(), time.perf_counter()
            records = load(folders)
            manifests = load_manifests(folders)
            t1 = time.perf_counter()
            build_site(records, manifests, out, specs, workload_info(), BUILD_TIME)
            t2, c2 = time.perf_counter(), time.process_time()
            pages = len(list(out.rglob("*.html")))
            size = sum(p.stat().st_size for p in out.rglob("*")) / 2**20
            times.append(t2 - t0)
            print(f"run {i + 1}: {len(records)} records -> {pages} pages, {size:.1f} MiB: load {t1 - t0:.2f} s, "
                  f"render {t2 - t1:.2f} s, total {t2 - t0:.2f} s wall ({c2 - c0:.2f} s CPU)", flush=True)
            if args.keep and i == args.repeat - 1:
                shutil.copytree(out, args.keep, dirs_exist_ok=True)
        print(f"best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s over {len(times)} runs "
              f"({args.records} records; target < 10 s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
