"""Running a suite for the gate: extra plugins, and a fresh calibration so timings can be normalized by it.

`membench run` reuses a stored calibration for a day; the gate measures a quick one every time, because
normalizing a run by its own calibration only removes machine drift when the calibration saw that machine in
that state, and measures it with the suite's thread count, like the cases it normalizes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

from harness import calibration
from harness.errors import UserError
from harness.isolation import call_in_worker
from harness.registry import REGISTRY
from harness.runner import devices_to_calibrate, open_store, run_suite
from harness.store import RESULTS_ROOT, RunStore
from harness.suite import SUITES_DIR, Suite, load_suite

# (suite, store, patterns, calibrations) -> anything; the CLI passes one with a progress bar
SuiteRunner = Callable[[Suite, RunStore, tuple[str, ...], dict], object]


def suite_location(name_or_path: str) -> str:
    """A suite file path for a name: ./suites/<name>.yaml, then membench's own suites/<name>.yaml.

    Looked up here because a folder named like the suite (the repository's ci/ beside suites/ci.yaml) must not
    shadow the suite of that name.
    """
    path = Path(name_or_path)
    if path.is_file() or path.suffix in (".yaml", ".yml"):
        return name_or_path
    for folder in (Path.cwd() / "suites", SUITES_DIR):
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return str(candidate)
    return name_or_path  # load_suite names the known suites in its error


def load_gate_suite(name_or_path: str, plugins: Iterable[str] = ()) -> Suite:
    """The suite with extra plugin modules appended (they register or wrap implementations in every worker)."""
    plugins = tuple(plugins)
    suite = load_suite(suite_location(name_or_path), REGISTRY)
    REGISTRY.load(plugins)  # after the suite's own: an extra plugin may wrap what those register
    extra = tuple(p for p in plugins if p not in suite.plugins)
    return dataclasses.replace(suite, plugins=suite.plugins + extra) if extra else suite


def _measure_with_threads(device: str, threads: int) -> dict:
    """A quick calibration with the suite's thread count, in its own worker (called through call_in_worker)."""
    from harness.threads import limited_threads

    with limited_threads(threads):
        profile = calibration._measure(device, False)
    profile["threads_setting"] = threads
    return profile


def fresh_calibrations(suite: Suite, patterns: Iterable[str] = ()) -> dict[str, dict]:
    """A quick calibration per device, measured with the suite's `threads`: the ceilings its cases run under,
    and on a busy machine the only stable ones (two threads stall at barriers there, in calibration too: the
    exp throughput of consecutive quick calibrations differed 15x)."""
    profiles = {}
    for device in devices_to_calibrate(suite, patterns):
        status, value = call_in_worker(_measure_with_threads, (device, suite.settings.threads), 600.0)
        if status != "ok":
            raise UserError(f"calibration on {device} did not finish: {value}")
        profiles[device] = value
    return profiles


def plain_runner(suite: Suite, store: RunStore, patterns: tuple[str, ...], calibrations: dict) -> object:
    return run_suite(suite, store, patterns, calibrations=calibrations)


def measure_run(suite: Suite, out: Path | None = None, patterns: Iterable[str] = (), calibrate: bool = True,
                runner: SuiteRunner = plain_runner, root: Path = RESULTS_ROOT) -> Path:
    """Run the suite into a new folder (default results/<run-id>) and return the folder."""
    patterns = tuple(patterns)
    store = open_store(suite, out, resume=False, root=root)
    calibrations = fresh_calibrations(suite, patterns) if calibrate else {}
    runner(suite, store, patterns, calibrations)
    return store.folder
