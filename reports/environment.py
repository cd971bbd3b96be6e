"""Plain summaries of a run manifest: device, git state, status counts, environment details.

Manifests are nested dicts written by the harness and may lack any key (older runs, CPU-only boxes),
so every accessor here tolerates absence and returns display strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reports.format import MISSING, as_text, format_bytes
from reports.leaderboard import STATUS_ORDER


@dataclass(frozen=True)
class RunSummary:
    """What the index table and run page header show about one run."""

    run: str
    suite: str
    suite_description: str
    started: str
    finished: str
    device: str
    git: str
    counts: list[tuple[str, int]]
    environment: list[tuple[str, str]] = field(default_factory=list)
    packages: list[tuple[str, str]] = field(default_factory=list)


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def device_summary(manifest: Mapping[str, Any]) -> str:
    """'CPU model / GPU name', or just the CPU when the run had no GPU."""
    env = manifest.get("environment") or {}
    cpu = as_text(_get(env, "cpu", "model")) or "unknown CPU"
    gpu = as_text(_get(env, "gpu", "name"))
    return f"{cpu} / {gpu}" if gpu else cpu


def git_summary(manifest: Mapping[str, Any]) -> str:
    """Short commit plus a dirty flag: a dirty tree means the numbers may not be reproducible."""
    git = _get(manifest, "environment", "git") or {}
    commit = as_text(git.get("commit")) if isinstance(git, Mapping) else None
    if not commit:
        return MISSING
    return f"{commit[:10]} (dirty)" if git.get("dirty") else commit[:10]


def status_counts(counts: Mapping[str, Any] | None) -> list[tuple[str, int]]:
    """Counts in a fixed status order (ok first), unknown statuses after, zeros dropped."""
    counts = counts or {}
    known = [s for s in STATUS_ORDER if s in counts]
    extra = sorted(s for s in counts if s not in STATUS_ORDER)
    return [(s, int(counts[s])) for s in [*known, *extra] if int(counts[s] or 0)]


def environment_rows(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Label/value pairs for the run page's environment table."""
    env = manifest.get("environment") or {}
    gpu = env.get("gpu") if isinstance(env, Mapping) else None
    mem = env.get("memory_total_bytes")
    rows = [
        ("python", as_text(env.get("python")) or MISSING),
        ("platform", as_text(env.get("platform")) or MISSING),
        ("CPU",
         f"{as_text(_get(env, 'cpu', 'model')) or MISSING} ({_get(env, 'cpu', 'cores') or '?'} cores)"),
        ("memory", format_bytes(float(mem)) if isinstance(mem, (int, float)) else MISSING),
        ("git", git_summary(manifest)),
    ]
    if isinstance(gpu, Mapping):
        gpu_mem = gpu.get("memory_total_bytes")
        mem_text = f", {format_bytes(float(gpu_mem))}" if isinstance(gpu_mem, (int, float)) else ""
        rows.append(("GPU", f"{gpu.get('name') or MISSING}{mem_text}, driver {gpu.get('driver') or MISSING}"))
        extra = sorted(k for k in gpu if k not in ("name", "driver", "memory_total_bytes"))
        rows += [(f"GPU {k}", str(gpu[k])) for k in extra]
    else:
        rows.append(("GPU", "none"))
    return rows


def summarize(run: str, manifest: Mapping[str, Any] | None, fallback_counts: Mapping[str, int]) -> RunSummary:
    """Summary of one run; a run seen only in the records (no manifest) still gets a row."""
    m = manifest or {}
    suite = m.get("suite") or {}
    packages = _get(m, "environment", "packages") or {}
    return RunSummary(
        run=run,
        suite=as_text(suite.get("name")) or MISSING,
        suite_description=as_text(suite.get("description")) or "",
        started=as_text(m.get("started_at")) or MISSING,
        finished=as_text(m.get("finished_at")) or "not finished",
        device=device_summary(m) if m else MISSING,
        git=git_summary(m) if m else MISSING,
        counts=status_counts(m.get("counts") or fallback_counts),
        environment=environment_rows(m) if m else [],
        packages=sorted((str(k), str(v)) for k, v in packages.items())
        if isinstance(packages, Mapping) else [],
    )
