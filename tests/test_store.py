"""The store: records validate on load, a torn last line is survivable, load() gives one row per case."""

import json

import pandas as pd
import pytest

from harness.case import Case, Record, metric
from harness.cli import export
from harness.errors import UserError
from harness.store import RunStore, load, read_records, validate_record

CASE = Case("testing", "scaled_copy", "exact", (("n", 16), ("dtype", "float32")), "cpu", 0)


def _record(status="ok", latency=0.002):
    metrics = {"latency_s": metric(latency, "s", "perf_counter_ns", samples=[latency] * 3, iqr=0.0, n=3)}
    return Record.for_case("r1", CASE, status, metrics=metrics if status == "ok" else {},
                           unmeasured={"energy_j": "no counter"}, model={"flops": 16.0, "bytes": {"dram": 128.0}},
                           error=None if status == "ok" else "boom")


def _store(tmp_path):
    return RunStore.create(tmp_path / "run", {"run": "r1", "suite": {"name": "t"}, "started_at": "x"})


def test_append_and_load_one_row_per_case_with_provenance_columns(tmp_path):
    store = _store(tmp_path)
    store.append(_record())
    frame = load(tmp_path / "run")
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["latency_s"] == 0.002 and row["latency_s__source"] == "perf_counter_ns"
    assert row["latency_s__n"] == 3 and row["param.n"] == 16 and row["param.dtype"] == "float32"
    assert row["energy_j__missing"] == "no counter" and row["model.bytes"] == 128.0


def test_torn_last_line_is_skipped_on_read_and_cut_before_the_next_append(tmp_path):
    store = _store(tmp_path)
    store.append(_record())
    with store.records_path.open("a") as f:
        f.write('{"schema": 1, "run": "r1", "ca')  # killed mid-write
    with pytest.warns(UserWarning, match="torn last line"):
        assert len(read_records(store.folder)) == 1
    reopened = RunStore.open(store.folder)
    reopened.append(_record(status="failed"))
    assert [r["status"] for r in read_records(store.folder)] == ["ok", "failed"]


def test_corrupt_middle_line_is_an_error_naming_the_line(tmp_path):
    store = _store(tmp_path)
    store.records_path.write_text("not json\n" + json.dumps(_record().to_json()) + "\n")
    with pytest.raises(UserError, match="records.jsonl:1: not a JSON record"):
        read_records(store.folder)


def test_validate_record_names_what_is_wrong():
    good = _record().to_json()
    assert validate_record(good) == []
    assert "schema 99" in validate_record({**good, "schema": 99})[0]
    assert any("status" in p for p in validate_record({**good, "status": "great"}))
    bad_metric = {**good, "metrics": {"latency_s": {"value": 1.0}}}
    assert validate_record(bad_metric) == ["metric latency_s lacks value, unit or source"]


def test_create_refuses_to_overwrite_a_run(tmp_path):
    store = _store(tmp_path)
    store.append(_record())
    with pytest.raises(UserError, match="--resume"):
        _store(tmp_path)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_round_trips(tmp_path, fmt):
    store = _store(tmp_path)
    store.append(_record(latency=0.003))
    store.append(_record(status="failed"))
    out = tmp_path / f"out.{fmt}"
    export([store.folder], out, fmt)
    frame = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
    assert list(frame["status"]) == ["ok", "failed"]
    assert frame["latency_s"].iloc[0] == 0.003 and pd.isna(frame["latency_s"].iloc[1])
    assert json.loads(frame["params"].iloc[0]) == {"dtype": "float32", "n": 16}


def test_metric_rejects_non_finite_values():
    with pytest.raises(ValueError, match="not a finite number"):
        metric(float("nan"), "s", "perf_counter_ns")
