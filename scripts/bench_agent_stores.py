"""Write and search latency (p50/p95) of every memory store on one generated history, with the hashing embedder.

Usage: python scripts/bench_agent_stores.py [--turns 6000] [--queries 300] [--seed 0] [--k 10] [--stores a,b]
Adds the turns one at a time (add latency per turn), then runs the generated questions as queries (search
latency per query, after one untimed warm-up search that also pays bm25's lazy index rebuild, reported apart).
BLAS and OpenMP are pinned to one thread unless OPENBLAS_NUM_THREADS / OMP_NUM_THREADS are set.
Also prints evidence recall@k (any gold turn among the hits) as a sanity figure, and the store's stats().
"""

from __future__ import annotations

import argparse
import os
import time

# One BLAS thread: a 6,000 x 384 mat-vec gains nothing from a second thread, and on a shared 2-core machine
# OpenBLAS's spinning worker threads turn a 0.1 ms product into 20 ms tails. Set it before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # faiss's OpenMP pool: the same reason

import numpy as np

from reference_impls.agents.store import make_store, store_names
from workloads.memory_agents.synthetic_history import generate


def percentile_ms(samples_ns: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(samples_ns, dtype=np.float64), q)) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=6000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--stores", default=",".join(store_names()))
    args = parser.parse_args()
    conversation = generate(turns=args.turns, questions=args.queries, seed=args.seed)
    turns = [t for s in conversation.sessions for t in s.turns]
    questions = conversation.qa[:args.queries]
    print(f"{len(turns)} turns, {len(questions)} queries, seed {args.seed}, k {args.k}, hashing embedder (dim 384)")
    print(f"{'store':15} {'add p50 ms':>10} {'add p95 ms':>10} {'first search ms':>15} {'search p50 ms':>13} "
          f"{'search p95 ms':>13} {'recall@k':>8} {'items':>6} {'MiB in mem':>10} {'MiB on disk':>11}")
    for name in args.stores.split(","):
        store = make_store(name)
        add_ns = []
        for turn in turns:
            start = time.perf_counter_ns()
            store.add(turn)
            add_ns.append(time.perf_counter_ns() - start)
        start = time.perf_counter_ns()
        store.search(questions[0].question, args.k)
        first_ms = (time.perf_counter_ns() - start) / 1e6
        search_ns, found = [], 0
        for item in questions:
            start = time.perf_counter_ns()
            hits = store.search(item.question, args.k)
            search_ns.append(time.perf_counter_ns() - start)
            kept = hits if name == "full_context" else hits[:args.k]  # the baseline's hits are the whole history
            got = {s for h in kept for s in h.source_turn_ids}
            found += bool(item.evidence) and bool(got & set(item.evidence))
        stats = store.stats()
        print(f"{name:15} {percentile_ms(add_ns, 50):10.3f} {percentile_ms(add_ns, 95):10.3f} {first_ms:15.2f} "
              f"{percentile_ms(search_ns, 50):13.3f} {percentile_ms(search_ns, 95):13.3f} "
              f"{found / len(questions):8.3f} {stats.items:6d} {stats.bytes_in_memory / 2**20:10.2f} "
              f"{stats.bytes_on_disk / 2**20:11.2f}", flush=True)
        store.close()


if __name__ == "__main__":
    main()
