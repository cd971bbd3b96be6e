"""How often the gate cries wolf, and how often it catches a real slowdown, on this machine.

    # 1. measure: clean runs of the ci suite, and runs with a 20% and a 5% injected slowdown, interleaved
    PYTHONPATH=.:tests/plugins python scripts/gate_power.py collect --out results/gate-power --clean 8 --slow 4
    # 2. decide: 200 A/A and 200 A/B gate decisions per slowdown, under each timing basis
    PYTHONPATH=.:tests/plugins python scripts/gate_power.py analyze results/gate-power --trials 200

collect: every run is a real `membench gate` run (fresh quick calibration, then the suite), in the order clean,
20%, clean, 5%, ... so the machine's load drifts over all three sets alike. The slowdown is the test-only
plugin tests/plugins/membench_slowdown.py (each call spins for the given fraction of its own duration).

analyze: one trial is one whole gate decision over the suite. A/A: two different clean runs; A/B: a clean run
against an injected one. Each trial draws its pair of runs at random and bootstraps every case's samples
within each run, so trials differ both in which runs meet (the between-run noise, which no number of samples
removes) and in the samples drawn. With K clean runs there are only K(K-1) ordered pairs: the trials are not
200 independent machines, which the output says beside the per-pair figures (no resampling).
Reported: false alarms (A/A trials with any regression, and the per-case rate), detection (per injected case:
the fraction of trials where that case is flagged regressed), per timing basis (raw, normalized, both).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SETS = {"clean": 0.0, "slow20": 0.2, "slow5": 0.05}


def collect(out: Path, clean: int, slow: int, suite_name: str, threads: int | None) -> None:
    """Interleave clean and injected runs; each set of runs is written under out/<set>/<n>."""
    if threads:  # every worker inherits it
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    order = []
    for i in range(max(clean, 2 * slow)):
        if i < clean:
            order.append(("clean", i))
        if i < 2 * slow:
            order.append(("slow20" if i % 2 == 0 else "slow5", i // 2))
    for set_name, index in order:
        folder = out / set_name / f"{index:02d}"
        if (folder / "records.jsonl").is_file():
            print(f"skip {folder} (exists)", flush=True)
            continue
        fraction = SETS[set_name]
        if fraction:
            os.environ["MEMBENCH_INJECT_SLOWDOWN"] = str(fraction)
        else:
            os.environ.pop("MEMBENCH_INJECT_SLOWDOWN", None)
        started, load = time.monotonic(), os.getloadavg()[0]
        # a fresh interpreter per run: the plugin reads its variable once, and workers fork from a server that
        # inherits the environment it was started with
        code = ("import sys; from pathlib import Path; from harness.gate_run import load_gate_suite, measure_run; "
                f"measure_run(load_gate_suite({suite_name!r}, ['membench_slowdown']), Path({str(folder)!r}))")
        status = os.spawnv(os.P_WAIT, sys.executable, [sys.executable, "-c", code])
        print(f"{set_name} {index}: {folder} in {time.monotonic() - started:.0f} s (exit {status}), load average "
              f"{load:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)


def _resampled(side, rng):
    """The same run with every metric's raw samples drawn again with replacement (a plausible re-measurement
    of that run, keeping its between-run offset)."""
    from harness.compare import Side

    records = {}
    for case, record in side.records.items():
        metrics = {}
        for name, metric in record["metrics"].items():
            samples = metric.get("samples")
            if samples:
                drawn = [samples[i] for i in rng.integers(0, len(samples), len(samples))]
                metric = {**metric, "samples": drawn, "value": float(np.median(drawn))}
            metrics[name] = metric
        records[case] = {**record, "metrics": metrics}
    return Side(side.label, side.manifest, records)


def _restricted(side, cases: set[str]):
    from harness.compare import Side

    return Side(side.label, side.manifest, {c: r for c, r in side.records.items() if c in cases})


BASES = ("raw", "normalized", "both")


def _decisions(comparison) -> dict[str, set[tuple[str, str, bool]]]:
    """Per timing basis, the (case, metric, is_timing) triples the gate calls regressed."""
    from harness.compare import TIMING_KINDS

    out = {basis: set() for basis in BASES}
    for case, row in comparison.rows():
        if row.kind == "sampled" and "normalized" in row.tests:
            raw, norm = row.tests["raw"]["verdict"], row.tests["normalized"]["verdict"]
            verdicts = {"raw": raw, "normalized": norm, "both": raw if raw == norm else "unchanged"}
        elif row.kind == "sampled":
            verdicts = dict.fromkeys(BASES, row.tests["raw"]["verdict"])
        else:
            verdicts = dict.fromkeys(BASES, row.verdict)
        for basis, verdict in verdicts.items():
            if verdict == "regressed":
                out[basis].add((case.case, row.metric, row.kind in TIMING_KINDS))
    return out


def _with_spread(base, repeats: list):
    """The base run as a baseline made with `membench gate --update-baseline` from it and its repeats."""
    from harness.baseline import between_run_spread
    from harness.compare import Side

    records = [{**r, "metrics": {n: dict(m) for n, m in r["metrics"].items()}} for r in base.records.values()]
    between_run_spread(records, [side.records for side in repeats])
    return Side(base.label, base.manifest, {r["case"]: r for r in records})


def gate_decision(base_pool: list, i: int, cand_pool: list, j: int, config, confirm: int, spread_runs: int, rng,
                  resample: bool) -> dict[str, set]:
    """What `membench gate` decides for base run i vs candidate run j: the baseline made from run i plus
    spread_runs - 1 other base runs, `confirm` re-runs drawn from the candidate pool. Every run in one decision is
    a different run."""
    from harness.compare import compare

    same = cand_pool is base_pool
    used = {("b", i), ("c", j)} | ({("b", j), ("c", i)} if same else set())
    spare_base = [k for k in range(len(base_pool)) if ("b", k) not in used]
    extra = list(rng.choice(spare_base, size=min(spread_runs - 1, len(spare_base)), replace=False))
    if same:
        used |= {("c", k) for k in extra}
    spare_cand = [k for k in range(len(cand_pool)) if ("c", k) not in used]
    picks = list(rng.choice(spare_cand, size=min(confirm, len(spare_cand)), replace=False)) if confirm else []
    base = _with_spread(base_pool[i], [base_pool[k] for k in extra]) if extra else base_pool[i]
    draw = (lambda side: _resampled(side, rng)) if resample else (lambda side: side)
    base = draw(base)
    flagged = _decisions(compare(base, draw(cand_pool[j]), config))
    for k in picks:
        cases = {case for found in flagged.values() for case, _, timing in found if timing}
        if not cases:
            break
        again = _decisions(compare(_restricted(base, cases), draw(_restricted(cand_pool[k], cases)), config))
        for basis in BASES:
            flagged[basis] = {f for f in flagged[basis] if not f[2] or f in again[basis]}
    return flagged


def experiment(name: str, base_pool: list, cand_pool: list, trials: int, config, confirm: int, spread_runs: int,
               rng) -> dict:
    """Per-pair decisions (the runs as measured) and `trials` resampled decisions."""
    same = cand_pool is base_pool
    pairs = [(i, j) for i in range(len(base_pool)) for j in range(len(cand_pool)) if not (same and i == j)]
    latency_cases = sorted({c for side in cand_pool for c, r in side.records.items()
                            if r["status"] == "ok" and "latency_s" in r["metrics"]})

    def tally(results: list[dict]) -> dict:
        summary = {}
        for basis in BASES:
            flagged = [r[basis] for r in results]
            per_case = {c: sum((c, "latency_s", True) in f for f in flagged) / len(flagged) for c in latency_cases}
            by_metric: dict[str, int] = {}
            for found in flagged:
                for _, metric, _ in found:
                    by_metric[metric] = by_metric.get(metric, 0) + 1
            summary[basis] = {"gate_fail_rate": sum(bool(f) for f in flagged) / len(flagged),
                              "latency_flag_rate_per_case": per_case,
                              "mean_latency_flag_rate": sum(per_case.values()) / max(len(per_case), 1),
                              "min_latency_flag_rate": min(per_case.values(), default=0.0),
                              "flags_by_metric": by_metric}
        return summary

    measured = [gate_decision(base_pool, i, cand_pool, j, config, confirm, spread_runs, rng, False) for i, j in pairs]
    resampled = []
    for _ in range(trials):
        i, j = pairs[rng.integers(len(pairs))]
        resampled.append(gate_decision(base_pool, i, cand_pool, j, config, confirm, spread_runs, rng, True))
    return {"experiment": name, "confirm_runs": confirm, "baseline_runs": spread_runs, "noise_z": config.noise_z,
            "min_effect": config.rule("", "latency_s", "sampled").min_effect, "pairs": len(pairs), "trials": trials,
            "measured_pairs": tally(measured), "resampled_trials": tally(resampled)}


def run_spread(pool: list) -> dict[str, dict]:
    """Between-run spread of each case's median latency across the clean runs."""
    out = {}
    for case in sorted(pool[0].records):
        medians = [side.records[case]["metrics"]["latency_s"]["value"] for side in pool
                   if case in side.records and "latency_s" in side.records[case]["metrics"]]
        if len(medians) >= 2:
            out[case] = {"median_s": float(np.median(medians)), "max_over_min": max(medians) / min(medians),
                         "cv": float(np.std(medians) / np.mean(medians))}
    return out


def analyze(folder: Path, trials: int, seed: int, config_path: Path | None, confirms: list[int],
            min_effects: list[float], spreads: list[int]) -> dict:
    """Every (confirm_runs, baseline_runs, min_effect) variant of the gate config on the same runs and draws."""
    from harness.compare import load_side
    from harness.gate_config import load_config

    base_config = load_config(config_path)
    pools = {name: [load_side(p) for p in sorted((folder / name).glob("*")) if (p / "records.jsonl").is_file()]
             for name in SETS}
    report = {"folder": str(folder), "config": base_config.to_json(), "runs": {k: len(v) for k, v in pools.items()},
              "spread": run_spread(pools["clean"]), "experiments": []}
    for confirm in confirms:
        for spread_runs in spreads:
            for min_effect in min_effects or [None]:
                defaults = dict(base_config.defaults)
                if min_effect is not None:
                    defaults["sampled"] = {**defaults.get("sampled", {}), "min_effect": min_effect}
                # the bootstrap CI is reported but never enters a verdict: 100 resamples keep this fast
                config = dataclasses.replace(base_config, resamples=100, defaults=defaults)
                rng = np.random.default_rng(seed)  # every variant sees the same draws
                report["experiments"].append(experiment("A/A", pools["clean"], pools["clean"], trials, config,
                                                        confirm, spread_runs, rng))
                for name in ("slow20", "slow5"):
                    if pools[name]:
                        report["experiments"].append(experiment(f"A/B {name}", pools["clean"], pools[name], trials,
                                                                config, confirm, spread_runs, rng))
    return report


def print_report(report: dict) -> None:
    print(f"runs: {report['runs']}")
    print("between-run spread of median latency over the clean runs (max/min, coefficient of variation):")
    for case, s in report["spread"].items():
        print(f"  {s['max_over_min']:7.2f}  {s['cv']:6.2f}  {s['median_s'] * 1e3:9.3f} ms  {case}")
    print("gate fails = share of whole-suite gate decisions with any regression; flagged = share of decisions in "
          "which a case's latency is called regressed (mean over cases, and the least-detected case)")
    for e in report["experiments"]:
        print(f"{e['experiment']:11s} confirm_runs={e['confirm_runs']} baseline_runs={e['baseline_runs']} "
              f"min_effect={e['min_effect']:.2f}: "
              f"{e['pairs']} run pairs, {e['trials']} resampled trials")
        for basis in BASES:
            m, r = e["measured_pairs"][basis], e["resampled_trials"][basis]
            print(f"    {basis:10s} gate fails: pairs {m['gate_fail_rate']:6.1%} trials {r['gate_fail_rate']:6.1%}"
                  f" | flagged per case: pairs {m['mean_latency_flag_rate']:6.1%} trials "
                  f"{r['mean_latency_flag_rate']:6.1%} (least {r['min_latency_flag_rate']:6.1%})"
                  f" | by metric: {r['flags_by_metric']}")


def collect_ab(out: Path, runs: int, rev: str, suite_file: Path, slow5: int = 0) -> None:
    """`membench gate --against REV` runs: clean (A/A: the same code on both sides) and with this tree's side
    slowed by 20% (and, for the first `slow5` rounds, by 5%), alternating. No confirmation re-runs here:
    analyze-ab applies the confirmation rule afterwards by drawing other runs of the flagged case."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    config = out / "ab-gate.yaml"
    text = Path("ci/gate.yaml").read_text()
    config.write_text(text.replace("confirm_runs: 2", "confirm_runs: 0")
                      .replace("baseline_runs: 5", "baseline_runs: 1"))
    shutil.copy(suite_file, out / "ab-suite.yaml")
    for k in range(runs):
        for name, fraction in (("ab-clean", 0.0), ("ab-slow20", 0.2), ("ab-slow5", 0.05))[:3 if k < slow5 else 2]:
            folder = out / name / f"{k:02d}"
            if (folder / "candidate" / "records.jsonl").is_file():
                continue
            env = {key: value for key, value in os.environ.items() if key != "MEMBENCH_INJECT_SLOWDOWN"}
            command = [sys.executable, "-m", "harness.cli", "gate", "--suite", str(out / "ab-suite.yaml"),
                       "--against", rev, "--out", str(folder), "--config", str(config)]
            if fraction:
                env["MEMBENCH_INJECT_SLOWDOWN"] = str(fraction)
                command += ["--plugin", "membench_slowdown"]
            started, load = time.monotonic(), os.getloadavg()[0]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            print(f"{name} {k}: exit {done.returncode} in {time.monotonic() - started:.0f} s, load average "
                  f"{load:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)


def _ab_decision(pairs: list, i: int, config, rng, resample: bool, confirm: int) -> dict:
    """The gate's decision on interleaved pair i; each timing flag must also be flagged in `confirm` other pairs
    of the same experiment, drawn at random (a confirmation re-runs the case's A/B interleaving afresh)."""
    from harness.compare import compare

    draw = (lambda side: _resampled(side, rng)) if resample else (lambda side: side)
    flagged = _decisions(compare(draw(pairs[i][0]), draw(pairs[i][1]), config))
    others = [k for k in range(len(pairs)) if k != i]
    for k in rng.choice(others, size=min(confirm, len(others)), replace=False) if confirm else []:
        cases = {case for found in flagged.values() for case, _, timing in found if timing}
        if not cases:
            break
        base, cand = (_restricted(side, cases) for side in pairs[k])
        again = _decisions(compare(draw(base), draw(cand), config))
        for basis in BASES:
            flagged[basis] = {f for f in flagged[basis] if not f[2] or f in again[basis]}
    return flagged


def analyze_ab(folder: Path, trials: int, seed: int, min_effects: list[float], confirms: list[int]) -> dict:
    """Per case: how often the A/A pairs flag a regression, how often the injected pairs do (fixed thresholds:
    an A/B job has no multi-run baseline), with and without confirmation re-runs."""
    from harness.compare import load_side
    from harness.gate_config import load_config

    pools = {name: [(load_side(p / "base"), load_side(p / "candidate")) for p in sorted((folder / name).glob("*"))
                    if all((p / side / "records.jsonl").is_file() for side in ("base", "candidate"))]
             for name in ("ab-clean", "ab-slow20", "ab-slow5")}
    complete = max((len(side.records) for pairs in pools.values() for pair in pairs for side in pair), default=0)
    pools = {name: [pair for pair in pairs if min(len(side.records) for side in pair) == complete]
             for name, pairs in pools.items()}  # a gate run still in progress has only some cases
    report = {"folder": str(folder), "pairs": {k: len(v) for k, v in pools.items()}, "experiments": []}
    for min_effect in min_effects or [0.10]:
        for confirm in confirms:
            base_config = load_config(folder / "ab-gate.yaml")
            defaults = {**base_config.defaults, "sampled": {**base_config.defaults.get("sampled", {}),
                                                            "min_effect": min_effect}}
            config = dataclasses.replace(base_config, resamples=100, defaults=defaults,
                                         timing_basis=base_config.interleaved_timing_basis)
            rng = np.random.default_rng(seed)
            for name, pairs in pools.items():
                if not pairs:
                    continue
                latency_cases = sorted(c for c, r in pairs[0][1].records.items() if "latency_s" in r["metrics"])
                measured = [_ab_decision(pairs, i, config, rng, False, confirm) for i in range(len(pairs))]
                drawn = [_ab_decision(pairs, int(rng.integers(len(pairs))), config, rng, True, confirm)
                         for _ in range(trials)]
                summary = {}
                for label, results in (("measured_pairs", measured), ("resampled_trials", drawn)):
                    summary[label] = {}
                    for basis in BASES:
                        flagged = [r[basis] for r in results]
                        per_case = {c: sum((c, "latency_s", True) in f for f in flagged) / len(flagged)
                                    for c in latency_cases}
                        summary[label][basis] = {
                            "gate_fail_rate": sum(bool(f) for f in flagged) / len(flagged),
                            "mean_latency_flag_rate": sum(per_case.values()) / max(len(per_case), 1),
                            "min_latency_flag_rate": min(per_case.values(), default=0.0),
                            "latency_flag_rate_per_case": per_case,
                            "flags": sorted({f"{c} {m}" for found in flagged for c, m, _ in found})}
                report["experiments"].append({"experiment": name, "min_effect": min_effect, "confirm_runs": confirm,
                                              "pairs": len(pairs), "trials": trials, **summary})
    return report


def per_case_ab(folder: Path, report: dict) -> list[str]:
    """Per case: the measured latency ratio (candidate / base, median over the complete pairs of each set) beside
    how often the gate flagged it, so detection can be read against the slowdown the injection really made."""
    from harness.compare import load_side

    def ratios(name: str) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for pair in sorted((folder / name).glob("*")):
            if not all((pair / side / "records.jsonl").is_file() for side in ("base", "candidate")):
                continue
            base, cand = load_side(pair / "base"), load_side(pair / "candidate")
            for case, record in cand.records.items():
                if "latency_s" in record["metrics"] and "latency_s" in base.records.get(case, {}).get("metrics", {}):
                    out.setdefault(case, []).append(record["metrics"]["latency_s"]["value"]
                                                    / base.records[case]["metrics"]["latency_s"]["value"])
        return out

    flagged = {(e["experiment"], e["confirm_runs"]): e["resampled_trials"]["raw"]["latency_flag_rate_per_case"]
               for e in report["experiments"]}
    clean, slow20, slow5 = ratios("ab-clean"), ratios("ab-slow20"), ratios("ab-slow5")
    lines = ["case | A/A ratio median (min-max) | 20%: ratio, flagged confirm 2 / 0 | 5%: ratio, flagged confirm 2 / 0"]
    for case in sorted(slow20, key=lambda c: float(np.median(slow20[c]))):
        aa, five = clean.get(case, [np.nan]), slow5.get(case, [np.nan])
        lines.append(f"{case} | {np.median(aa):.3f} ({min(aa):.2f}-{max(aa):.2f}) | {np.median(slow20[case]):.3f}, "
                     f"{flagged.get(('ab-slow20', 2), {}).get(case, 0):.0%} / "
                     f"{flagged.get(('ab-slow20', 0), {}).get(case, 0):.0%} | {np.median(five):.3f}, "
                     f"{flagged.get(('ab-slow5', 2), {}).get(case, 0):.0%} / "
                     f"{flagged.get(('ab-slow5', 0), {}).get(case, 0):.0%}")
    return lines


def print_ab(report: dict) -> None:
    print(f"A/B interleaved pairs: {report['pairs']}")
    for e in report["experiments"]:
        print(f"{e['experiment']:10s} min_effect={e['min_effect']:.2f} confirm_runs={e['confirm_runs']}: "
              f"{e['pairs']} pairs, {e['trials']} trials")
        for basis in BASES:
            m, r = e["measured_pairs"][basis], e["resampled_trials"][basis]
            print(f"    {basis:10s} gate fails: pairs {m['gate_fail_rate']:6.1%} trials {r['gate_fail_rate']:6.1%}"
                  f" | latency flagged per case: pairs {m['mean_latency_flag_rate']:6.1%} trials "
                  f"{r['mean_latency_flag_rate']:6.1%} (least {r['min_latency_flag_rate']:6.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--out", type=Path, default=Path("results/gate-power"))
    c.add_argument("--clean", type=int, default=8)
    c.add_argument("--slow", type=int, default=4, help="runs per injected slowdown (20%% and 5%%)")
    c.add_argument("--suite", default="ci")
    c.add_argument("--threads", type=int, default=0,
                   help="also set OMP_NUM_THREADS/MKL_NUM_THREADS for the workers (0: leave them; suites/ci.yaml "
                   "sets threads: 1 itself)")
    a = sub.add_parser("analyze")
    a.add_argument("folder", type=Path)
    a.add_argument("--trials", type=int, default=200)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--config", type=Path, default=None, help="gate thresholds (default ci/gate.yaml)")
    a.add_argument("--confirm", type=int, nargs="+", default=[0, 2], help="confirm_runs variants")
    a.add_argument("--min-effect", type=float, nargs="*", default=[], help="defaults.sampled.min_effect variants")
    a.add_argument("--baseline-runs", type=int, nargs="+", default=[1, 5],
                   help="baseline_runs variants (1: no between-run spread, fixed thresholds only)")
    b = sub.add_parser("collect-ab")
    b.add_argument("--out", type=Path, default=Path("results/gate-power-ab"))
    b.add_argument("--runs", type=int, default=3)
    b.add_argument("--slow5", type=int, default=0, help="rounds that also run a 5%% slowdown")
    b.add_argument("--rev", default="HEAD")
    b.add_argument("--suite-file", type=Path, default=Path("suites/ci.yaml"),
                   help="a suite whose workloads exist at REV too")
    z = sub.add_parser("analyze-ab")
    z.add_argument("folder", type=Path)
    z.add_argument("--trials", type=int, default=200)
    z.add_argument("--seed", type=int, default=0)
    z.add_argument("--min-effect", type=float, nargs="*", default=[0.10])
    z.add_argument("--confirm", type=int, nargs="+", default=[0, 2], help="confirm_runs variants")
    args = parser.parse_args()
    if args.command == "collect":
        collect(args.out, args.clean, args.slow, args.suite, args.threads)
    elif args.command == "collect-ab":
        collect_ab(args.out, args.runs, args.rev, args.suite_file, args.slow5)
    elif args.command == "analyze-ab":
        report = analyze_ab(args.folder, args.trials, args.seed, args.min_effect, args.confirm)
        (args.folder / "analysis-ab.json").write_text(json.dumps(report, indent=1, default=str))
        print_ab(report)
        (args.folder / "per-case.txt").write_text("\n".join(per_case_ab(args.folder, report)) + "\n")
    else:
        report = analyze(args.folder, args.trials, args.seed, args.config, args.confirm, args.min_effect,
                         args.baseline_runs)
        (args.folder / "analysis.json").write_text(json.dumps(report, indent=1, default=str))
        print_report(report)


if __name__ == "__main__":
    main()
