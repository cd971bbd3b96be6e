"""The edge family's headline tables, in markdown, from a run folder of the `edge` suite.

Usage: python scripts/edge_tables.py RUN_FOLDER
Prints flash_offload (policy x bytes and reads per token x ms/token measured and modeled), patch_inference
(peak activation memory tracked vs analytic, recompute FLOPs), cpu_decode (llama-bench's columns plus ours and
the hardware model's prediction for this machine) and fits_on_device (max context per model x format x device).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

Row = dict


def value(record: Row, name: str) -> float:
    metric = record["metrics"].get(name)
    return float("nan") if metric is None else metric["value"]


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def of(records: list[Row], workload: str) -> list[Row]:
    return [r for r in records if r["workload"] == workload and r["status"] == "ok"]


def flash(records: list[Row]) -> str:
    by_policy = {r["impl"]: r for r in of(records, "flash_offload")}
    rows = []
    for policy in ("naive", "windowing", "bundling", "both"):
        r = by_policy.get(policy)
        if r is None:
            continue
        tokens = r["params"]["tokens"]
        rows.append([policy, f"{value(r, 'flash.bytes_read_per_token') / 1e6:.2f}",
                     f"{value(r, 'flash.reads_per_token'):.0f}", f"{value(r, 'flash.dram_resident_bytes') / 1e6:.1f}",
                     f"{value(r, 'flash.dram_budget_bytes') / 1e6:.1f}", f"{value(r, 'flash.model_bytes') / 1e6:.1f}",
                     f"{value(r, 'latency_s') / tokens * 1e3:.1f}", f"{value(r, 'flash.io_ms_per_token'):.1f}",
                     *(f"{value(r, f'flash.modeled_ms_per_token.{d}'):.1f}" for d in ("pi5", "orin_nano", "phone")),
                     f"{value(r, 'quality.rel_l2_error'):.1e}"])
    text = table("flash_offload", ["policy", "MB read/token", "reads/token", "DRAM resident MB", "DRAM budget MB",
                                   "file MB", "ms/token measured", "io ms/token", "modeled Pi 5", "modeled Orin",
                                   "modeled phone", "rel err"], rows)
    if "naive" in by_policy and "both" in by_policy:
        speedup = value(by_policy["naive"], "latency_s") / value(by_policy["both"], "latency_s")
        text += f"\nnaive / both, measured: {speedup:.2f}x\n"
    return text


def patches(records: list[Row]) -> str:
    rows = [[r["impl"], str(r["params"]["patches"]) if r["impl"] == "patches" else "-",
             *(f"{value(r, f'edge_patch.{m}') / 1024:.0f}" for m in ("peak_activation_bytes_int8",
                                                                    "analytic_peak_bytes_int8",
                                                                    "mcunet_peak_bytes_int8")),
             f"{value(r, 'edge_patch.flops_ratio'):.3f}", f"{value(r, 'quality.rel_l2_error'):.1e}"]
            for r in of(records, "patch_inference")]
    return table("patch_inference", ["impl", "patches", "peak tracked kB (int8)", "peak analytic kB",
                                     "MCUNet-convention peak kB", "FLOPs vs layers", "rel err"], rows)


def decode(records: list[Row]) -> str:
    rows = []
    for r in of(records, "cpu_decode"):
        p, n = r["params"], r["params"]["tokens"]
        predicted = (r.get("model") or {}).get("predicted_latency_s")
        rows.append([p["model"], r["impl"], f"{value(r, 'cpu_decode.size_bytes') / 1e6:.0f}",
                     f"{value(r, 'cpu_decode.params') / 1e6:.1f}M", str(p["threads"]), f"{p['test']}{n}",
                     f"{n / value(r, 'latency_s'):.1f}", f"{n / predicted:.1f}" if predicted else "-",
                     f"{value(r, 'peak_memory_bytes') / 2**20:.0f}",
                     *(f"{value(r, f'cpu_decode.modeled_tokens_per_s.{d}'):.1f}"
                       for d in ("pi5", "orin_nano", "phone", "m2")),
                     f"{value(r, 'cpu_decode.modeled_energy_j_per_token.pi5'):.3f}"])
    return table("cpu_decode (llama-bench columns, then ours; * modeled)",
                 ["model", "impl", "size MB (f32)", "params", "threads", "test", "t/s", "t/s predicted here",
                  "peak RSS MiB", "Pi 5 t/s*", "Orin t/s*", "phone t/s*", "M2 t/s*", "Pi 5 J/token*"], rows)


def fits(records: list[Row]) -> str:
    rows = [[r["params"]["model"], r["params"]["format"], r["params"]["device"],
             "yes" if value(r, "edge_fit.fits") else "no", f"{value(r, 'edge_fit.headroom_bytes') / 1e9:+.2f}",
             f"{value(r, 'edge_fit.max_context_tokens'):,.0f}", f"{value(r, 'edge_fit.decode_tokens_per_s'):.1f}"]
            for r in of(records, "fits_on_device")]
    return table("fits_on_device (context 4096)", ["model", "format", "device", "fits", "headroom GB",
                                                  "max context", "decode t/s*"], rows)


SECTIONS: tuple[Callable[[list[Row]], str], ...] = (flash, patches, decode, fits)


def main() -> None:
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "records.jsonl").is_file():
        sys.exit("usage: python scripts/edge_tables.py RUN_FOLDER (a folder holding records.jsonl)")
    lines = (Path(sys.argv[1]) / "records.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    print("\n".join(section(records) for section in SECTIONS))


if __name__ == "__main__":
    main()
