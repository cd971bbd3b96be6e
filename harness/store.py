"""A run is a folder: manifest.json plus records.jsonl, appended and flushed one line per finished case."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from harness.case import SCHEMA_VERSION, STATUSES, Record
from harness.errors import UserError

MANIFEST, RECORDS = "manifest.json", "records.jsonl"
MODEL_COLUMNS = ("footprint_bytes", "dtype", "launches", "achieved_flops_per_s", "achieved_bytes_per_s", "device",
                 "predicted_latency_s", "floor_latency_s", "roofline_fraction", "datasheet_roofline_fraction",
                 "bound", "arithmetic_intensity", "residual", "predicted_energy_j", "energy_model",
                 "floor_applies")
RESULTS_ROOT = Path("results")


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y-%m-%dT%H-%M-%SZ}-{secrets.token_hex(2)}"


class RunStore:
    """Single writer of one run folder. Appends never rewrite finished lines, so a killed run loses nothing."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.manifest_path, self.records_path = self.folder / MANIFEST, self.folder / RECORDS

    @classmethod
    def create(cls, folder: Path, manifest: dict) -> RunStore:
        store = cls(folder)
        if store.records_path.exists() and store.records_path.stat().st_size > 0:
            raise UserError(f"{folder} already holds records: pass --resume to continue it, or another --out")
        store.folder.mkdir(parents=True, exist_ok=True)
        store.write_manifest(manifest)
        store.records_path.touch()
        return store

    @classmethod
    def open(cls, folder: Path) -> RunStore:
        store = cls(folder)
        if not store.manifest_path.is_file():
            raise UserError(f"{folder} is not a membench run folder (no {MANIFEST})")
        store.records_path.touch()
        store._drop_torn_tail()
        return store

    def manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text())

    def write_manifest(self, manifest: dict) -> None:
        """Atomic replace, so a kill mid-write leaves the old manifest, never half of one."""
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, self.manifest_path)

    def append(self, record: Record) -> None:
        line = json.dumps(record.to_json(), allow_nan=False)  # params keep their declared order
        with self.records_path.open("a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def records(self) -> list[dict]:
        return read_records(self.folder)

    def finished(self) -> dict[str, dict]:
        """Case id -> its record, for --resume: every case with a record is done, whatever its status."""
        return {r["case"]: r for r in self.records()}

    def _drop_torn_tail(self) -> None:
        """A kill during a write can leave half a line; cut it so the next append starts a clean line."""
        data = self.records_path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with self.records_path.open("r+b") as f:
                f.truncate(keep)


def read_records(folder: Path) -> list[dict]:
    """Validated records of one run; a torn last line (killed mid-write) is skipped with a warning."""
    path = Path(folder) / RECORDS
    if not path.is_file():
        raise UserError(f"{folder} has no {RECORDS}: not a membench run folder")
    lines = path.read_text().split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: the writer was killed mid-line
                warnings.warn(f"{path}:{number}: skipping a torn last line", stacklevel=2)
                continue
            raise UserError(f"{path}:{number}: not a JSON record") from None
        data = migrate(data)
        problems = validate_record(data)
        if problems:
            raise UserError(f"{path}:{number}: invalid record: {'; '.join(problems)}")
        records.append(data)
    return records


def migrate(data: dict) -> dict:
    """Bring an older record up to SCHEMA_VERSION (schema 1 is the first: nothing to migrate yet)."""
    return data


def validate_record(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return ["a record is a JSON object"]
    if data.get("schema") != SCHEMA_VERSION:
        return [f"schema {data.get('schema')!r} is not supported (this membench reads {SCHEMA_VERSION})"]
    required = {"run": str, "case": str, "family": str, "workload": str, "impl": str, "params": dict,
                "device": str, "seed": int, "status": str, "metrics": dict, "unmeasured": dict, "model": dict,
                "validity": dict}
    problems = [f"{key} missing or not {kind.__name__}" for key, kind in required.items()
                if not isinstance(data.get(key), kind)]
    if data.get("status") not in STATUSES:
        problems.append(f"status {data.get('status')!r} not in {STATUSES}")
    for name, m in (data.get("metrics") or {}).items():
        if not isinstance(m, dict) or not {"value", "unit", "source"} <= set(m):
            problems.append(f"metric {name} lacks value, unit or source")
    return problems


def resolve_run(path_or_id: str, root: Path = RESULTS_ROOT) -> Path:
    """A run folder path, or a run id under results/."""
    for candidate in (Path(path_or_id), root / path_or_id):
        if (candidate / MANIFEST).is_file():
            return candidate
    raise UserError(f"no run {path_or_id!r}: give a run folder (with {MANIFEST}) or a run id under {root}/")


def latest_run(root: Path = RESULTS_ROOT, suite: str | None = None) -> Path | None:
    """Most recently started run folder (of `suite`, when given) under root."""
    runs = []
    for manifest_path in root.glob(f"*/{MANIFEST}"):
        manifest = json.loads(manifest_path.read_text())
        if suite is None or manifest.get("suite", {}).get("name") == suite:
            runs.append((manifest.get("started_at", ""), manifest_path.parent))
    return max(runs)[1] if runs else None


def load(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Records of one or many runs as a DataFrame: one row per case, one column per metric value."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    rows = [flatten(r) for p in paths for r in read_records(resolve_run(str(p)))]
    return pd.DataFrame(rows)


def load_manifests(paths: Iterable[str | Path]) -> dict[str, dict]:
    manifests = {}
    for p in paths:
        manifest = json.loads((resolve_run(str(p)) / MANIFEST).read_text())
        manifests[manifest["run"]] = manifest
    return manifests


def flatten(record: dict) -> dict:
    """One row: identity columns, param.<name>, <metric> values with <metric>__source/unit/iqr/n/note/missing."""
    row = {key: record.get(key) for key in ("run", "case", "family", "workload", "impl", "device", "seed",
                                            "status", "error", "workload_version", "params")}
    row.update({f"param.{k}": v for k, v in record["params"].items()})
    for name, m in record["metrics"].items():
        row[name] = m["value"]
        row[f"{name}__source"], row[f"{name}__unit"] = m["source"], m["unit"]
        row[f"{name}__iqr"], row[f"{name}__n"], row[f"{name}__note"] = m.get("iqr"), m.get("n"), m.get("note")
    for name, reason in record["unmeasured"].items():
        row[f"{name}__missing"] = reason
    model = record["model"]
    row["model.flops"] = model.get("flops")
    row["model.bytes"] = sum(model.get("bytes", {}).values()) if model.get("bytes") else None
    row["model.traffic_bytes"] = sum(model["traffic_bytes"].values()) if model.get("traffic_bytes") else None
    for key in MODEL_COLUMNS:
        row[f"model.{key}"] = model.get(key)
    row["valid"] = record["validity"].get("ok", True)
    row["validity_reasons"] = list(record["validity"].get("reasons", []))
    row["ranks_summary"] = _ranks_summary(record.get("ranks") or [])
    return row


def _ranks_summary(ranks: list[dict]) -> str | None:
    """A multi-rank case's ranks in one line ("rank 0: 1.79 s, 10.0 GiB; rank 1: ..."); None for one process."""
    if len(ranks) < 2:
        return None
    parts = []
    for r in ranks:
        bits = [f"{r['latency_s']:.4g} s" if "latency_s" in r else r.get("status", "")]
        if "peak_memory_bytes" in r:
            bits.append(f"{r['peak_memory_bytes'] / 2**30:.3g} GiB")
        parts.append(f"rank {r.get('rank')}: {', '.join(bits)}")
    return "; ".join(parts)
