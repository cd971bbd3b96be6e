"""`membench gate`: run a suite, compare it with a baseline, and answer with an exit code a CI job can use.

0: no regression. 1: at least one regression (a significant and large enough slowdown, a deterministic metric
that moved the wrong way, a case that stopped passing). 2: the gate could not decide (a bad flag, a missing
or damaged baseline, a suite error, nothing in common to compare). The markdown summary is written into the
run folder (gate.md, beside gate.json) and wherever --summary points, e.g. $GITHUB_STEP_SUMMARY.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from harness.baseline import read_baseline, write_baseline
from harness.compare import TIMING_KINDS, Comparison, Side, compare, load_side
from harness.compare_render import to_json_text, to_markdown
from harness.errors import UserError
from harness.gate_config import load_config
from harness.gate_run import SuiteRunner, load_gate_suite, measure_run, plain_runner
from harness.store import resolve_run

EXIT_PASS, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2


@dataclass(frozen=True)
class GateRequest:
    suite: str = "ci"
    baseline: Path | None = None
    config: Path | None = None
    update_baseline: bool = False
    against: str | None = None
    run: str | None = None  # gate an existing run instead of running the suite
    repeats: tuple[str, ...] = ()  # --update-baseline from existing runs: further runs of the same code
    out: Path | None = None
    plugins: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    calibrate: bool = True
    repo: Path | None = None


@dataclass
class GateOutcome:
    exit_code: int
    summary: str
    comparison: Comparison | None = None
    run_folder: Path | None = None
    base_folder: Path | None = None
    baseline_written: Path | None = None


def _check_request(request: GateRequest) -> None:
    if request.against and (request.update_baseline or request.run):
        raise UserError("--against runs both sides itself: it does not combine with --update-baseline or --run")
    if request.repeats and not (request.update_baseline and request.run):
        raise UserError("more than one --run is for --update-baseline (the first run, then its repeats)")
    if not request.against and request.baseline is None:
        raise UserError("give --baseline PATH (a file written by `membench gate --update-baseline`) or --against REV")
    if request.baseline is not None and not request.update_baseline and not request.against:
        read_baseline(request.baseline)  # a missing or damaged baseline fails now, not after a five-minute run


def run_gate(request: GateRequest, runner: SuiteRunner = plain_runner, echo=print) -> GateOutcome:
    """Everything `membench gate` does except printing and exiting."""
    _check_request(request)
    config = load_config(request.config)
    remeasure = None
    if request.against:
        from harness.interleave import run_interleaved

        config = dataclasses.replace(config, timing_basis=config.interleaved_timing_basis)

        base_folder, run_folder = run_interleaved(request.suite, request.against, request.out, request.plugins,
                                                  request.patterns, request.calibrate, request.repo, runner, echo)
        base, title = load_side(base_folder), f"membench gate vs {request.against}"

        def remeasure(pattern: str, attempt: int) -> tuple[Side, Side]:
            again = run_interleaved(request.suite, request.against, run_folder.parent / f"confirm-{attempt}",
                                    request.plugins, (pattern,), request.calibrate, request.repo, runner, echo)
            return load_side(again[0]), load_side(again[1])
    else:
        base_folder = None
        if request.run:
            run_folder = resolve_run(request.run)
        else:
            suite = load_gate_suite(request.suite, request.plugins)
            run_folder = measure_run(suite, request.out, request.patterns, request.calibrate, runner)

            def remeasure(pattern: str, attempt: int) -> tuple[Side, Side]:
                folder = measure_run(suite, run_folder / f"confirm-{attempt}", (pattern,), request.calibrate, runner)
                return base, load_side(folder)
        if request.update_baseline:
            if request.run:
                repeats = [resolve_run(r) for r in request.repeats]
            else:
                repeats = [measure_run(suite, run_folder / f"repeat-{k}", request.patterns, request.calibrate,
                                       runner) for k in range(1, config.baseline_runs)]
            return _update_baseline(request, run_folder, config, repeats)
        base, title = load_side(request.baseline), "membench gate"
    comparison = compare(base, load_side(run_folder), config)
    if not comparison.cases:
        raise UserError(f"nothing to compare: no case of {run_folder} is in {base.label} (another suite or a "
                        "filter that leaves nothing?)")
    if config.confirm_runs and remeasure is not None:
        confirm_regressions(comparison, remeasure, config.confirm_runs, echo)
    elif config.confirm_runs and comparison.regressed:
        comparison.notes.append("regressions not confirmed by re-runs: --run gates a run that already exists")
    summary = to_markdown(comparison, title)
    (run_folder / "gate.md").write_text(summary)
    (run_folder / "gate.json").write_text(to_json_text(comparison) + "\n")
    code = EXIT_REGRESSION if comparison.regressed else EXIT_PASS
    return GateOutcome(code, summary, comparison, run_folder, base_folder)


def confirm_regressions(comparison: Comparison, remeasure, runs: int, echo=print) -> None:
    """Re-measure every case whose timing regressed, `runs` times; a timing regression stands only when each
    re-run regresses too. On a shared machine a neighbour's burst slows one run of a case, not three in a row;
    a real slowdown is in the code and shows every time. Rows not confirmed become unchanged, saying why."""
    pending = {(c.case, m.metric): m for c, m in comparison.rows(("regressed",)) if m.kind in TIMING_KINDS}
    flagged = len(pending)
    for attempt in range(1, runs + 1):
        if not pending:
            break
        cases = sorted({case for case, _ in pending})
        echo(f"confirming {len(pending)} timing regression(s) in {len(cases)} case(s): re-run {attempt} of {runs}")
        base, cand = remeasure("^(?:" + "|".join(re.escape(c) for c in cases) + ")$", attempt)
        again = {(c.case, m.metric): m for c, m in compare(base, cand, comparison.config).rows()}
        for key, row in list(pending.items()):
            redo = again.get(key)
            if redo is not None and redo.verdict == "regressed":
                row.reason += f"; confirmed by re-run {attempt} (×{redo.ratio:.3f})"
                continue
            said = f"{redo.verdict} ({redo.reason})" if redo is not None else "no measurement"
            row.verdict = "unchanged"
            row.reason = f"not confirmed: regressed in the run ({row.reason}) but re-run {attempt}: {said}"
            del pending[key]
    if flagged:
        comparison.notes.append(f"{flagged} timing regression(s) flagged, {len(pending)} confirmed by {runs} "
                                "re-run(s) each (confirm_runs)")


def _update_baseline(request: GateRequest, run_folder: Path, config, repeats: list[Path]) -> GateOutcome:
    """Write the run (with its repeats' spread) as the new baseline; when an old one exists, show what changed."""
    previous = None
    if Path(request.baseline).is_file():
        try:
            previous = compare(load_side(request.baseline), load_side(run_folder), config)
        except UserError:
            previous = None  # a damaged old baseline is exactly what --update-baseline replaces
    written = write_baseline(run_folder, request.baseline, repeats)
    size_kib = written.stat().st_size / 1024
    spread = f" and the spread of {len(repeats)} more run(s)" if repeats else ""
    lines = [f"## membench gate: baseline written to `{written}` ({size_kib:.0f} KiB) from run `{run_folder}`"
             f"{spread}", ""]
    if previous is not None and previous.cases:
        lines.append("What changed against the previous baseline (for the record; --update-baseline does not fail):")
        lines += ["", to_markdown(previous, "previous baseline vs this run")]
    summary = "\n".join(lines) + "\n"
    (run_folder / "gate.md").write_text(summary)
    return GateOutcome(EXIT_PASS, summary, previous, run_folder, baseline_written=written)
