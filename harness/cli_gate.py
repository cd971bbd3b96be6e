"""CLI commands of the regression gate: compare, gate, import-pytest-benchmark."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from harness.console import console
from harness.errors import UserError


def _write_or_print(text: str, target: str) -> None:
    if target == "-":
        click.echo(text, nl=not text.endswith("\n"))
    else:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(text)
        console.print(f"written: {escape(target)}")


@click.command("compare")
@click.argument("base")
@click.argument("cand")
@click.option("--config", type=click.Path(path_type=Path), default=None,
              help="Gate thresholds (default ./ci/gate.yaml, else membench's own).")
@click.option("--markdown", "markdown_to", is_flag=False, flag_value="-", default=None, metavar="[PATH]",
              help="Markdown instead of the table: to stdout, or to PATH.")
@click.option("--json", "json_to", is_flag=False, flag_value="-", default=None, metavar="[PATH]",
              help="JSON instead of the table: to stdout, or to PATH.")
@click.option("--all", "show_all", is_flag=True, help="Show unchanged comparisons too.")
def compare_command(base: str, cand: str, config: Path | None, markdown_to: str | None, json_to: str | None,
                    show_all: bool) -> None:
    """Compare CAND with BASE (run folders, run ids or baseline files): per case and metric a verdict."""
    from harness.compare import compare, load_side
    from harness.compare_render import print_comparison, to_json_text, to_markdown
    from harness.gate_config import load_config

    comparison = compare(load_side(base), load_side(cand), load_config(config))
    if markdown_to:
        _write_or_print(to_markdown(comparison, show_unchanged=show_all), markdown_to)
    if json_to:
        _write_or_print(to_json_text(comparison) + "\n", json_to)
    if not (markdown_to or json_to):
        print_comparison(comparison, console, show_all)


@click.command("gate")
@click.option("--suite", "suite_name", default="ci", show_default=True, help="Suite name or YAML path.")
@click.option("--baseline", type=click.Path(path_type=Path), default=None,
              help="Baseline file (results/baselines/<name>.json).")
@click.option("--update-baseline", is_flag=True, help="Run, then write the run as the new baseline (exit 0).")
@click.option("--against", "against", default=None, metavar="REV",
              help="Interleaved A/B: run the suite for git revision REV and this tree in alternation, compare.")
@click.option("--run", "runs", multiple=True, metavar="RUN",
              help="Gate an existing run instead of running the suite (with --update-baseline, repeat it: further "
              "runs of the same code give each case's between-run spread).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder (default results/<run-id>).")
@click.option("--config", type=click.Path(path_type=Path), default=None, help="Thresholds (default ci/gate.yaml).")
@click.option("--summary", "summary_path", type=click.Path(path_type=Path), default=None,
              help="Also write the markdown summary here (e.g. $GITHUB_STEP_SUMMARY).")
@click.option("--plugin", "plugins", multiple=True, help="Extra plugin module to load (repeatable).")
@click.option("--filter", "patterns", multiple=True, help="Regular expression a case id must match (repeatable).")
@click.option("--calibrate/--no-calibrate", default=True, help="Measure a fresh quick calibration (normalization).")
def gate_command(suite_name: str, baseline: Path | None, update_baseline: bool, against: str | None,
                 runs: tuple[str, ...], out: Path | None, config: Path | None, summary_path: Path | None,
                 plugins: tuple[str, ...], patterns: tuple[str, ...], calibrate: bool) -> None:
    """Run a suite, compare with a baseline: exit 0 pass, 1 regression, 2 error."""
    from harness.gate import EXIT_ERROR, GateRequest, run_gate

    request = GateRequest(suite=suite_name, baseline=baseline, config=config, update_baseline=update_baseline,
                          against=against, run=runs[0] if runs else None, repeats=runs[1:], out=out, plugins=plugins,
                          patterns=patterns, calibrate=calibrate)
    try:
        outcome = run_gate(request, runner=_progress_runner, echo=lambda line: console.print(escape(line)))
    except UserError:
        raise
    except Exception as exc:  # an uncaught exception would exit 1, which CI would read as "regression"
        console.print_exception(max_frames=8)
        click.echo(f"error: the gate could not decide: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    if summary_path:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        with summary_path.open("a") as f:  # GitHub's step summary file is appended to
            f.write(outcome.summary)
    click.echo(outcome.summary)
    if outcome.run_folder:
        console.print(f"run: {escape(str(outcome.run_folder))}  (gate.md, gate.json)")
    sys.exit(outcome.exit_code)


def _progress_runner(suite, store, patterns, calibrations):
    from harness.cli import _run_with_progress  # the same progress display as `membench run`

    return _run_with_progress(suite, store, patterns, calibrations)


@click.command("import-pytest-benchmark")
@click.argument("json_file", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder (default results/<run-id>).")
def import_pytest_benchmark_command(json_file: Path, out: Path | None) -> None:
    """Turn pytest-benchmark JSON (pytest --benchmark-json=FILE) into a membench run folder."""
    from harness.pytest_benchmark_import import import_benchmarks

    folder = import_benchmarks(json_file, out)
    console.print(f"run: {escape(str(folder))}")


COMMANDS = (compare_command, gate_command, import_pytest_benchmark_command)
