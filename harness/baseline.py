"""The gate's baseline: a small JSON digest of one run, committed beside the code it vouches for.

It keeps what a comparison reads — per case the status, the workload version, every metric with its raw
samples (rounded to 5 significant digits: far below any noise a gate can see), the model's predicted latency
— and the manifest's suite, environment and calibration. Device state, timestamps per case and notes a
human reads in the report are left out, so a 30-case baseline stays well under 100 kB. Made from several runs
of the same code, it also keeps each metric's between-run spread, from which the gate sets that case's
threshold (see harness.compare).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from harness.errors import UserError
from harness.store import read_records, resolve_run, validate_record

KIND = "membench-baseline"
VERSION = 1
SIGNIFICANT_DIGITS = 5
RECORD_KEYS = ("schema", "run", "case", "family", "workload", "impl", "params", "device", "seed", "status",
               "error", "workload_version", "unmeasured", "validity")
METRIC_KEYS = ("value", "unit", "source", "iqr", "n", "calls_per_sample", "between_runs")
MODEL_KEYS = ("flops", "bytes", "footprint_bytes", "dtype", "device", "predicted_latency_s", "floor_latency_s",
              "bound", "no_prediction")
ENVIRONMENT_KEYS = ("git", "python", "platform", "hostname", "cpu", "memory_total_bytes", "packages", "gpu", "env")


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def digest_record(record: dict) -> dict:
    out = {key: record.get(key) for key in RECORD_KEYS}
    out["metrics"] = {}
    for name, metric in record["metrics"].items():
        kept = {key: metric[key] for key in METRIC_KEYS if key in metric}
        if "samples" in metric:
            kept["samples"] = [_round(s) for s in metric["samples"]]
        out["metrics"][name] = kept
    out["model"] = {key: record["model"][key] for key in MODEL_KEYS if key in record["model"]}
    return out


def between_run_spread(records: list[dict], others: list[dict[str, dict]]) -> None:
    """Attach to each metric the spread of its value over repeated runs of the same code (sd of the log of each
    run's median): the gate's yardstick for how much this case moves on this machine with nothing changed."""
    for record in records:
        for name, metric in record["metrics"].items():
            values = [metric["value"]]
            for run in others:
                other = run.get(record["case"], {}).get("metrics", {}).get(name)
                if other is not None and other.get("source") == metric.get("source"):
                    values.append(other["value"])
            if len(values) >= 2 and all(v > 0 for v in values):
                logs = [math.log(v) for v in values]
                metric["between_runs"] = {"runs": len(values), "log_sd": round(statistics.stdev(logs), 5)}


def digest(folder: str | Path, repeats: Sequence[str | Path] = ()) -> dict:
    """The baseline of one run folder (or run id); `repeats`, further runs of the same code, add each metric's
    between-run spread."""
    folder = resolve_run(str(folder))
    manifest = json.loads((folder / "manifest.json").read_text())
    environment = manifest.get("environment") or {}
    kept_manifest = {
        "run": manifest["run"], "suite": manifest.get("suite"), "started_at": manifest.get("started_at"),
        "finished_at": manifest.get("finished_at"), "counts": manifest.get("counts"),
        "environment": {key: environment[key] for key in ENVIRONMENT_KEYS if key in environment},
        "calibration": manifest.get("calibration") or {},
    }
    records = [digest_record(r) for r in read_records(folder)]
    others = [{r["case"]: r for r in read_records(resolve_run(str(f)))} for f in repeats]
    between_run_spread(records, others)
    kept_manifest["repeats"] = [str(f) for f in repeats]
    return {"kind": KIND, "version": VERSION, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(
        timespec="seconds"), "source": str(folder), "manifest": kept_manifest, "records": records}


def write_baseline(folder: str | Path, path: str | Path, repeats: Sequence[str | Path] = ()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(digest(folder, repeats), indent=1, sort_keys=True, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def is_baseline(path: str | Path) -> bool:
    path = Path(path)
    if not path.is_file() or path.suffix != ".json":
        return False
    try:
        return json.loads(path.read_text()).get("kind") == KIND
    except (json.JSONDecodeError, AttributeError):
        return False


def read_baseline(path: str | Path) -> tuple[dict, list[dict]]:
    """(manifest, records) of a baseline file; a damaged file is a UserError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"baseline {path} does not exist: create it with `membench gate --update-baseline "
                        f"--baseline {path}`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"baseline {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise UserError(f"{path} is not a membench baseline (no \"kind\": \"{KIND}\")")
    if data.get("version") != VERSION:
        raise UserError(f"baseline {path} has version {data.get('version')!r}; this membench reads {VERSION}")
    records = data.get("records")
    if not isinstance(records, list):
        raise UserError(f"baseline {path}: 'records' must be a list")
    for index, record in enumerate(records):
        problems = validate_record(record)
        if problems:
            raise UserError(f"baseline {path}: records[{index}]: {'; '.join(problems)}")
    return data.get("manifest") or {}, records
