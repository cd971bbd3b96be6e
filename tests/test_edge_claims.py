"""Edge claims read the flash_offload / patch_inference / fits_on_device records they say they read."""

import pandas as pd
import pytest

from harness.registry import REGISTRY

REGISTRY.load()
FLASH_PARAMS = {"param.d_model": 1024, "param.d_ff": 8192, "param.tokens": 32, "param.sparsity": 0.9,
                "param.correlation": 0.8, "param.window": 4, "param.budget_fraction": 0.5,
                "param.cache_mode": "direct"}


def _flash(impl: str, latency: float, status: str = "ok") -> dict:
    return {"workload": "flash_offload", "impl": impl, "device": "cpu", "status": status, "valid": True,
            **FLASH_PARAMS, "latency_s": latency, "flash.model_over_dram": 2.0, "flash.dram_resident_bytes": 1.1e7,
            "flash.model_bytes": 6.7e7}


def _patch(impl: str, peak: float, patches: int) -> dict:
    return {"workload": "patch_inference", "impl": impl, "device": "cpu", "status": "ok", "valid": True,
            "param.resolution": 224, "param.blocks": 4, "param.width": 1.0, "param.patches": patches,
            "edge_patch.peak_activation_bytes_int8": peak, "edge_patch.mcunet_peak_bytes_int8": 1372 * 1024,
            "edge_patch.flops_ratio": 1.2}


def _fit(model_params: float, device: str, fmt: str, fits: bool) -> dict:
    return {"workload": "fits_on_device", "impl": "planner", "device": "cpu", "status": "ok", "valid": True,
            "param.device": device, "param.format": fmt, "param.model": f"m{model_params}",
            "edge_fit.parameters": model_params, "edge_fit.fits": float(fits)}


def _evaluate(claim: str, rows: list[dict]) -> dict:
    return REGISTRY.claims[claim].evaluate(pd.DataFrame(rows))


def test_flash_claims_read_the_budget_ratio_and_naive_over_both():
    rows = [_flash("naive", 3.2), _flash("windowing", 1.0), _flash("bundling", 1.8), _flash("both", 0.64),
            _flash("naive", 0.1, status="failed")]
    speed = _evaluate("P006-speedup", rows)
    assert speed["measured"] == pytest.approx(5.0) and speed["verdict"] == "reproduced"
    assert "100.0 ms/token" in speed["detail"]
    dram = _evaluate("P006-dram", rows)
    assert dram["measured"] == 2.0 and dram["verdict"] == "reproduced"
    assert _evaluate("P006-speedup", [_flash("naive", 1.0)])["verdict"] == "not measurable here"


def test_patch_claim_takes_layers_over_the_best_patching():
    rows = [_patch("layers", 1_705_984, 3), _patch("patches", 385_088, 3), _patch("patches", 250_000, 4)]
    row = _evaluate("P027-peak", rows)
    assert row["measured"] == pytest.approx(1_705_984 / 250_000) and "4x4 patches" in row["detail"]


def test_pi_fit_claim_is_the_largest_model_on_both_boards_in_bf16():
    rows = []
    for params, fits_4gb in ((0.5e9, True), (1.5e9, True), (8e9, False)):
        for fmt in ("bf16", "int4"):
            rows += [_fit(params, "raspberry-pi-5-8gb", fmt, params < 5e9 or fmt == "int4"),
                     _fit(params, "raspberry-pi-5-4gb", fmt, fits_4gb)]
    row = _evaluate("P130-fit", rows)
    assert row["measured"] == pytest.approx(1.5) and row["verdict"] == "reproduced"
    assert "int4: 1.50B" in row["detail"]
    assert _evaluate("P130-fit", rows[::2])["verdict"] == "not measurable here"  # one board only: no verdict
    assert _evaluate("P130-fit", rows[:2])["measured"] == pytest.approx(0.5)  # only the 0.5B model in bf16


def test_flash_claims_ignore_other_workloads_param_columns():
    rows = [_flash("naive", 2.0), _flash("both", 0.5), _fit(1.5e9, "raspberry-pi-5-8gb", "bf16", True)]
    assert _evaluate("P006-speedup", rows)["measured"] == pytest.approx(4.0)
