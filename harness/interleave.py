"""Interleaved A/B: the suite for a git revision and for this tree, case by case in alternation, in one job.

Comparing against a baseline measured on another day (or another CI machine) compares machines as much as
code. Here both sides meet the same machine in the same minutes: for each case the revision's run and this
tree's run follow each other, in the order AB for even cases and BA for odd ones, so slow drift and a
"second run is warmer" bias fall on both sides equally.

The revision runs from a temporary `git worktree` through its own `python -m harness.cli run` (its own code,
its own registry; with --resume each call adds one case to the same run folder). This tree runs in-process.
Both sides time every case in a fresh worker process, as any membench run does, and both calibrate afresh.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import UserError
from harness.gate_run import SuiteRunner, fresh_calibrations, load_gate_suite, plain_runner, suite_location
from harness.runner import baseline_first, open_store, select
from harness.store import MANIFEST, RESULTS_ROOT, new_run_id


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"git {' '.join(args)} failed: {exc}") from None
    if done.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def resolve_revision(repo: Path, rev: str) -> str:
    """The commit a revision names; a UserError when the folder is not a git checkout or the name is unknown."""
    return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")


def repository_root(start: Path | None = None) -> Path:
    return Path(_git(start or Path.cwd(), "rev-parse", "--show-toplevel"))


@contextmanager
def worktree(repo: Path, commit: str) -> Iterator[Path]:
    """A detached checkout of `commit` in a temporary folder, removed afterwards."""
    holder = Path(tempfile.mkdtemp(prefix="membench-ab-"))
    tree = holder / "tree"
    _git(repo, "worktree", "add", "--detach", str(tree), commit)
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)], capture_output=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)
        shutil.rmtree(holder, ignore_errors=True)


def case_pattern(case_id: str) -> str:
    """A --filter that matches exactly this case id."""
    return f"^{re.escape(case_id)}$"


def run_revision_case(tree: Path, suite_file: Path, folder: Path, case_id: str, calibrate: bool,
                      timeout_s: float) -> None:
    """One case with the revision's own code: `python -m harness.cli run` inside its worktree."""
    command = [sys.executable, "-m", "harness.cli", "run", "--suite", str(suite_file), "--out", str(folder),
               "--filter", case_pattern(case_id)]
    if (folder / MANIFEST).is_file():
        command.append("--resume")
    if not calibrate:
        command.append("--no-calibrate")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    try:
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise UserError(f"the revision's run of {case_id} did not finish in {timeout_s:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise UserError(f"the revision's `membench run` failed (exit {done.returncode}) on {case_id}: "
                        + " / ".join(tail))


def run_interleaved(suite_name: str, rev: str, out_root: Path | None = None, plugins: tuple[str, ...] = (),
                    patterns: tuple[str, ...] = (), calibrate: bool = True, repo: Path | None = None,
                    runner: SuiteRunner = plain_runner,
                    echo: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Run the suite for `rev` (base) and this tree (candidate) in alternation; return both run folders.

    Extra `plugins` load on this tree's side only (the revision runs its suite file as it is).
    """
    repo = (repo or repository_root()).resolve()
    commit = resolve_revision(repo, rev)
    suite = load_gate_suite(suite_name, plugins)
    suite_file = Path(suite_location(suite_name)).resolve()
    cases = baseline_first(select(suite.cases, patterns))
    if not cases:
        raise UserError(f"no case of suite {suite.name!r} matches {list(patterns)}")
    out_root = (out_root or RESULTS_ROOT / f"ab-{new_run_id()}").resolve()
    base_folder, cand_folder = out_root / "base", out_root / "candidate"
    timeout_s = suite.settings.timeout_s + 300.0
    echo(f"A/B: {rev} ({commit[:10]}) vs this tree, {len(cases)} cases in alternation -> {out_root}")
    with worktree(repo, commit) as tree:
        store = open_store(suite, cand_folder, resume=False)
        calibrations = fresh_calibrations(suite, patterns) if calibrate else {}
        for index, case in enumerate(cases):
            order = ("base", "candidate") if index % 2 == 0 else ("candidate", "base")
            for side in order:
                if side == "base":
                    run_revision_case(tree, suite_file, base_folder, case.id, calibrate, timeout_s)
                else:
                    runner(suite, store, (case_pattern(case.id),), calibrations)
            echo(f"  {index + 1}/{len(cases)} {'AB' if order[0] == 'base' else 'BA'} {case.id}")
    return base_folder, cand_folder
