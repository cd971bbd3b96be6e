"""The memory-agent family's headline tables, in markdown, from a run folder of the `agents` suite.

Usage: python scripts/agents_tables.py RUN_FOLDER
Prints (1) retrieval: store x embedder x recall@1/5/10 x MRR x tokens per query x search p95 x footprint,
(2) cost growth: write/search p95 and bytes per turn at each history length, (3) crossover: turns where full
context stops paying, per device, weight format and full-context mode. Reads records.jsonl only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def value(record: dict, name: str) -> float | None:
    metric = record.get("metrics", {}).get(name)
    return None if metric is None else metric["value"]


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}f}" if abs(x) < 1000 else f"{x:,.0f}"


def records(folder: Path) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("status") == "ok"]


def retrieval(rows: list[dict]) -> list[str]:
    out = ["| store | embedder | R@1 | R@5 | R@10 | MRR | tokens/query | % of history | search p95 ms "
           "| MiB in memory |", "|---|---|---|---|---|---|---|---|---|---|"]
    chosen = sorted((r for r in rows if r["workload"] == "memory_retrieval"),
                    key=lambda r: -(value(r, "quality.evidence_recall_any@10") or 0))
    for r in chosen:
        mib = (value(r, "memory.bytes_in_memory") or 0) / 2**20
        out.append(f"| {r['impl']} | {r['params']['embedder']} | "
                   + " | ".join(fmt(value(r, f"quality.evidence_recall_any@{k}")) for k in (1, 5, 10))
                   + f" | {fmt(value(r, 'quality.evidence_mrr'))} | {fmt(value(r, 'memory.tokens_per_query'), 0)}"
                   + f" | {100 * (value(r, 'memory.tokens_fraction_of_history') or 0):.2f}"
                   + f" | {fmt(value(r, 'memory.search_p95_ms'))} | {mib:.1f} |")
    return out


def growth(rows: list[dict]) -> list[str]:
    out = ["| store | embedder | turns | write p50 ms | write p95 ms | search p50 ms | search p95 ms | bytes/turn |",
           "|---|---|---|---|---|---|---|---|"]
    chosen = sorted((r for r in rows if r["workload"] == "memory_cost"),
                    key=lambda r: (r["impl"], r["params"]["embedder"], r["params"]["turns"]))
    for r in chosen:
        out.append(f"| {r['impl']} | {r['params']['embedder']} | {r['params']['turns']:,} | "
                   + " | ".join(fmt(value(r, m)) for m in ("memory.write_p50_ms", "memory.write_p95_ms",
                                                           "memory.search_p50_ms", "memory.search_p95_ms"))
                   + f" | {fmt(value(r, 'memory.bytes_per_turn'), 0)} |")
    return out


def crossover(rows: list[dict]) -> list[str]:
    out = ["| store | embedder | device | weights | full context | crossover (latency) turns | crossover (energy) "
           "turns | fits up to turns | store s/query @6k | full s/query @6k |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    chosen = sorted((r for r in rows if r["workload"] == "memory_crossover"),
                    key=lambda r: (r["params"]["device"], r["params"]["full_context"], r["impl"],
                                   r["params"]["embedder"]))
    for r in chosen:
        p = r["params"]
        out.append(f"| {r['impl']} | {p['embedder']} | {p['device']} | {p['weights']} | {p['full_context']} | "
                   f"{fmt(value(r, 'memory.crossover_turns_latency'), 0)} | "
                   f"{fmt(value(r, 'memory.crossover_turns_energy'), 0)} | "
                   f"{fmt(value(r, 'memory.full_context_fit_turns'), 0)} | {fmt(value(r, 'memory.store_query_s'))} | "
                   f"{fmt(value(r, 'memory.full_context_query_s'))} |")
    return out


def main() -> None:
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "records.jsonl").is_file():
        sys.exit("usage: python scripts/agents_tables.py RUN_FOLDER (a folder holding records.jsonl)")
    rows = records(Path(sys.argv[1]))
    for title, table in (("Retrieval", retrieval(rows)), ("Cost growth", growth(rows)),
                         ("Crossover", crossover(rows))):
        print(f"## {title}\n")
        print("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
