"""`membench`: a thin click layer over keyword-argument functions. The one place where harness meets reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from harness import calibration, metrics
from harness.case import Record
from harness.cli_fit import fit_command
from harness.cli_gate import COMMANDS as GATE_COMMANDS
from harness.cli_hardware import COMMANDS as HARDWARE_COMMANDS
from harness.console import console, default_device, format_seconds
from harness.errors import UserError
from harness.registry import REGISTRY
from harness.runner import Executor, LocalExecutor, devices_to_calibrate, open_store, run_suite, select
from harness.store import RESULTS_ROOT, load, load_manifests, resolve_run
from harness.suite import list_suites, load_suite, resolve_suite_path

STATUS_STYLE = {"ok": "green", "failed": "red", "timeout": "yellow", "oom": "magenta", "skipped": "dim"}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """membench: measure memory in AI systems, beside each case's analytic cost."""


@cli.command("list")
@click.argument("what", type=click.Choice(["workloads", "impls", "suites", "all"]), default="all")
def list_command(what: str) -> None:
    """List registered workloads, implementations, or the suites membench can find."""
    REGISTRY.load()
    if what in ("workloads", "all"):
        table = Table("workload", "family", "params (default)", "sweep", title="workloads")
        for name, w in sorted(REGISTRY.workloads.items()):
            params = ", ".join(f"{p.name}={p.default}" for p in w.params)
            table.add_row(name, w.family, params, w.sweep_param)
        console.print(table)
    if what in ("impls", "all"):
        table = Table("workload", "impl", "devices", "baseline", "what", title="implementations")
        for workload in sorted(REGISTRY.impls):
            for name, impl in sorted(REGISTRY.impls[workload].items()):
                table.add_row(workload, name, ",".join(impl.devices), "yes" if impl.baseline else "", impl.description)
        console.print(table)
    if what in ("suites", "all"):
        table = Table("suite", "path", title="suites")
        for name in list_suites():
            table.add_row(name, str(resolve_suite_path(name)))
        console.print(table)


@cli.command("run")
@click.option("--suite", "suite_name", default=None, help="Suite name (in suites/) or path to a YAML file. "
              "Default: gpu when CUDA is available, else smoke.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Run every case on this device.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder (default results/<run-id>).")
@click.option("--resume", is_flag=True, help="Continue --out (or the latest run of this suite): only unfinished cases.")
@click.option("--filter", "patterns", multiple=True, help="Regular expression a case id must match (repeatable).")
@click.option("--report/--no-report", default=False, help="Render the HTML report when the run ends.")
@click.option("--calibrate/--no-calibrate", "use_calibration", default=True,
              help="Record this machine's ceilings (a fresh stored profile, else a quick measurement).")
@click.option("--executor", "executor_kind", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: one case at a time here. ray: each case a Ray task (needs membench[scale]).")
@click.option("--address", default=None, help="Ray cluster address (with --executor ray; default: Ray's own "
              "lookup, RAY_ADDRESS or a `ray start` cluster here, else a fresh local instance).")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --executor ray: CPU cases running at once per node (more than 1 lets timed cases "
              "contend for cores and memory bandwidth). GPU cases are limited by their GPUs.")
def run_command(suite_name: str | None, device: str | None, out: Path | None, resume: bool,
                patterns: tuple[str, ...], report: bool, use_calibration: bool, executor_kind: str,
                address: str | None, max_concurrent: int) -> None:
    """Run a suite; each finished case is appended to records.jsonl at once."""
    if executor_kind != "ray" and (address is not None or max_concurrent != 1):
        raise UserError("--address and --max-concurrent apply to --executor ray only")
    suite = load_suite(suite_name or ("gpu" if default_device() == "cuda" else "smoke"), REGISTRY.load(), device=device)
    executor = _make_executor(executor_kind, suite, address, max_concurrent)  # before a run folder exists
    try:
        store = open_store(suite, out, resume, RESULTS_ROOT)
        where = f", executor={executor.describe()['kind']}" if executor_kind != "local" else ""
        console.print(f"[bold]membench[/] suite [cyan]{suite.name}[/] ({len(suite.cases)} cases, "
                      f"isolation={suite.settings.isolation}{where}) -> {store.folder}")
        calibrations = {}
        if use_calibration and not store.manifest().get("calibration"):
            for name in devices_to_calibrate(suite, patterns):
                calibrations[name] = calibration.ensure(name)
                console.print(_calibration_line(calibrations[name]))
        result = _run_with_progress(suite, store, patterns, calibrations, executor)
    finally:
        executor.close()  # run_suite closes it too; closing twice is harmless
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts.items())) or "nothing to run"
    if result.skipped_finished:
        counts += f"; {result.skipped_finished} already finished"
    console.print(f"run: {store.folder}  ({counts})")
    if report:
        index = build_report([store.folder], store.folder / "report")
        console.print(f"report: {index.resolve()}")


def _calibration_line(profile: dict) -> str:
    how = f"reused {profile['reused_from']}" if profile.get("reused_from") else f"measured ({profile['mode']})"
    flops = ", ".join(f"{d} {v / 1e12:.3g} TFLOP/s" for d, v in profile["matmul_flops_per_s"].items() if v)
    return (f"calibration {profile['device']} ({escape(profile['name'])}, {how}): copy "
            f"{profile['copy_bytes_per_s'] / 1e9:.1f} GB/s; matmul {flops}")


def _make_executor(kind: str, suite, address: str | None, max_concurrent: int) -> Executor:
    """The local executor, or Ray's (imported only here: Ray is the optional `scale` extra)."""
    if kind == "local":
        return LocalExecutor()
    from harness.executor_ray import RayExecutor

    return RayExecutor(suite.settings, address=address, max_concurrent=max_concurrent)


def _run_with_progress(suite, store, patterns, calibrations, executor=None):
    columns = (SpinnerColumn(), TextColumn("{task.description}", style="cyan"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("starting", total=None)

        def on_start(case):
            if progress.tasks[task].total is None:
                finished = store.finished()
                progress.update(task, total=sum(1 for c in select(suite.cases, patterns) if c.id not in finished))
            progress.update(task, description=escape(case.id))

        def on_record(record: Record):
            progress.advance(task)
            progress.console.print(_record_line(record))

        return run_suite(suite, store, patterns, on_start=on_start, on_record=on_record, calibrations=calibrations,
                         executor=executor)


def _record_line(record: Record) -> str:
    style = STATUS_STYLE.get(record.status, "")
    line = f"[{style}]{record.status:>7}[/] {escape(record.case)}"
    latency = record.metrics.get("latency_s")
    if latency:
        line += f"  {format_seconds(latency['value'])} ± {format_seconds(latency['iqr'])}"
    overhead = record.metrics.get("peak_memory_overhead_bytes")
    if overhead:
        line += f"  +{overhead['value'] / 2**20:.1f} MiB"
    if record.error:
        line += f"  [dim]{escape(record.error)}[/]"
    return line


@cli.command("report")
@click.argument("runs", nargs=-1, required=True)
@click.option("-o", "--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="Site folder (html, required), or the markdown file (markdown; default: print it).")
@click.option("--format", "fmt", type=click.Choice(["html", "markdown"]), default="html", show_default=True,
              help="html: the static site; markdown: the top of each leaderboard and the failed or invalid cases.")
@click.option("--build-time", default=None, help="Fix the build timestamp (for byte-identical sites).")
def report_command(runs: tuple[str, ...], out_path: Path | None, fmt: str, build_time: str | None) -> None:
    """Render a static, offline HTML site (or a markdown summary) from one or many runs (folders or run ids)."""
    folders = [resolve_run(r) for r in runs]
    if fmt == "markdown":
        text = report_markdown(folders)
        if out_path is None:
            click.echo(text, nl=False)
            return
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(text, encoding="utf-8")
        console.print(f"report: {out_path.resolve()}")
        return
    if out_path is None:
        raise UserError("membench report: give -o DIR for the HTML site (or --format markdown)")
    index = build_report(folders, out_path, build_time)
    console.print(f"report: {index.resolve()}")


def _report_inputs(folders: list[Path]):
    REGISTRY.load()
    records = load(folders)
    if records.empty:
        raise UserError(f"no records in {', '.join(map(str, folders))}: nothing to report")
    info = {name: w.info() for name, w in REGISTRY.workloads.items()}
    claims = [claim.evaluate(records) for _, claim in sorted(REGISTRY.claims.items())]
    return records, load_manifests(folders), info, claims


def build_report(folders: list[Path], out_dir: Path, build_time: str | None = None) -> Path:
    """Join the store's data to the report: reports imports nothing from the harness."""
    from reports import build_site

    records, manifests, info, claims = _report_inputs(folders)
    return build_site(records, manifests, out_dir, metrics.all_specs(), info, build_time,
                      devices=device_ceilings(manifests), claims=claims)


def report_markdown(folders: list[Path]) -> str:
    """The markdown summary of `membench report --format markdown`."""
    from reports import render_markdown

    records, manifests, info, claims = _report_inputs(folders)
    return render_markdown(records, manifests, metrics.all_specs(), info, claims)


def device_ceilings(manifests: dict[str, dict]) -> dict[str, dict]:
    """Datasheet and calibrated ceilings of every device a run calibrated, as plain data for the report."""
    from harness.prediction import DeviceModels

    out = {}
    for manifest in manifests.values():
        for profile in (manifest.get("calibration") or {}).values():
            models = DeviceModels.for_profile(profile)
            if models.calibrated is None:
                continue
            out[models.calibrated.name] = {
                "label": models.calibrated.label,
                "datasheet": _ceilings(models.datasheet, source=True) if models.datasheet else None,
                "calibrated": {**_ceilings(models.calibrated), "measured_at": profile.get("measured_at")},
            }
    return out


def _ceilings(device, source: bool = False) -> dict:
    main = device.tier(device.main_tier)
    out = {"peak_flops": {dtype: fig.value for dtype, fig in device.peak_flops.items()},
           "bandwidth_bytes_per_s": main.bandwidth_bytes_per_s.value}
    if source:
        out["source"] = main.bandwidth_bytes_per_s.source
    return out


@cli.command("claims")
@click.argument("runs", nargs=-1)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the table as JSON.")
def claims_command(runs: tuple[str, ...], json_out: Path | None) -> None:
    """Hold the seed papers' claims against the records of RUNS (folders or run ids): measured value, verdict."""
    REGISTRY.load()
    records = load([resolve_run(r) for r in runs]) if runs else load([])
    rows = [claim.evaluate(records) for _, claim in sorted(REGISTRY.claims.items())]
    table = Table("claim", "statement", "expected", "measured", "verdict", "how / detail", title="claims")
    colour = {"reproduced": "green", "not reproduced": "red", "not measurable here": "dim"}
    for row in rows:
        measured = f"{row['measured']:.4g} {row['unit']}" if "measured" in row else "—"
        bound = f"{row['comparison']} {row['expected']:.4g} {row['unit']}"
        table.add_row(f"{row['id']}\n[dim]{escape(row['paper'])}[/]", escape(row["statement"]), bound, measured,
                      f"[{colour[row['verdict']]}]{row['verdict']}[/]", escape(row["detail"]))
    console.print(table)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(rows, indent=1, default=str))
        console.print(f"claims: {json_out}")


@cli.command("export")
@click.argument("runs", nargs=-1, required=True)
@click.option("--parquet", "fmt", flag_value="parquet", default=True, help="Write Parquet (default).")
@click.option("--csv", "fmt", flag_value="csv", help="Write CSV.")
@click.option("-o", "--out", "out_file", type=click.Path(path_type=Path), default=None,
              help="Output file (default: <first run>/records.<fmt>).")
def export_command(runs: tuple[str, ...], fmt: str, out_file: Path | None) -> None:
    """Export the records of one or many runs as one table (one row per case, one column per metric)."""
    folders = [resolve_run(r) for r in runs]
    out_file = out_file or folders[0] / f"records.{fmt}"
    export(folders, out_file, fmt)
    console.print(f"exported: {out_file}")


def export(folders: list[Path], out_file: Path, fmt: str) -> None:
    frame = load(folders)
    # nested columns (params dict, reason lists) go out as JSON text so every format can hold them
    for column in ("params", "validity_reasons"):
        if column in frame:
            frame[column] = frame[column].map(lambda v: json.dumps(v, sort_keys=True))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out_file, index=False) if fmt == "parquet" else frame.to_csv(out_file, index=False)


for _command in (*HARDWARE_COMMANDS, *GATE_COMMANDS, fit_command):
    cli.add_command(_command)


def main() -> None:
    """Entry point: a user's mistake is one paragraph on stderr and exit code 2, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
