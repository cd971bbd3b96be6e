"""This machine's measured ceilings, stored per device and host, reused while fresh, recorded in manifests."""

from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path

from harness.errors import UserError
from harness.isolation import call_in_worker
from harness.store import RESULTS_ROOT

CALIBRATION_DIR = RESULTS_ROOT / "calibration"
MAX_AGE_S = 24 * 3600.0


def profile_path(device: str, folder: Path = CALIBRATION_DIR) -> Path:
    return folder / f"{device}-{platform.node() or 'host'}.json"


def _measure(device: str, full: bool) -> dict:
    """Runs inside a fresh worker so the parent never holds a CUDA context or calibration buffers."""
    from reference_impls.hardware.calibrate import CalibrationSizes, calibrate

    sizes = CalibrationSizes.full(device) if full else CalibrationSizes.quick(device)
    profile = calibrate(device, sizes)
    profile["mode"] = "full" if full else "quick"
    profile["host"] = platform.node()
    return profile


def measure(device: str, full: bool, timeout_s: float = 600.0) -> dict:
    status, value = call_in_worker(_measure, (device, full), timeout_s)
    if status != "ok":
        raise UserError(f"calibration on {device} did not finish: {value}")
    return value


def load_fresh(device: str, folder: Path = CALIBRATION_DIR, max_age_s: float = MAX_AGE_S) -> dict | None:
    """A stored profile of this host and device younger than max_age_s, with the same torch; else None."""
    path = profile_path(device, folder)
    if not path.is_file():
        return None
    profile = json.loads(path.read_text())
    import torch

    measured = dt.datetime.fromisoformat(profile["measured_at"])
    age = (dt.datetime.now(dt.timezone.utc) - measured).total_seconds()
    same = profile.get("host") == platform.node() and profile.get("torch") == torch.__version__
    return profile if same and age <= max_age_s else None


def save(profile: dict, folder: Path = CALIBRATION_DIR) -> Path:
    path = profile_path(profile["device"], folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile, indent=2, sort_keys=True) + "\n")
    return path


def ensure(device: str, folder: Path = CALIBRATION_DIR, reuse: bool = True) -> dict:
    """The profile a run records: a fresh stored one (full or quick), else a quick measurement, stored."""
    profile = load_fresh(device, folder) if reuse else None
    if profile is not None:
        return {**profile, "reused_from": str(profile_path(device, folder))}
    profile = measure(device, full=False)
    save(profile, folder)
    return profile
