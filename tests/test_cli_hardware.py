"""`membench devices` and `membench model`: the registry and the transformer model from the command line."""

import json

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.console import console


@pytest.fixture(autouse=True)
def wide_console():
    """Tables wrap at 80 columns without a terminal; the assertions read whole rows."""
    width = console.width
    console.width = 220
    yield
    console.width = width


def invoke(*args) -> str:
    """The command's output with runs of spaces collapsed, so table rows read "label │ value"."""
    return " ".join(CliRunner().invoke(cli, list(args), catch_exceptions=False).output.split())


def test_devices_lists_the_registry():
    out = invoke("devices")
    for name in ("h100-sxm-80gb", "sambanova-sn40l", "mcu-256kb-sram", "jetson-orin-nano-8gb-7w"):
        assert name in out


def test_model_llama_8b_on_h100_at_8k():
    out = invoke("model", "llama-3.1-8b", "--device", "h100-sxm-80gb", "--context", "8192")
    assert "131,072 B" in out  # KV bytes per token, bf16
    assert "max concurrent sequences │ 59" in out
    assert "decode attention intensity │ 4.00 FLOP/B" in out and "decode FFN intensity │ 1.00 FLOP/B" in out
    assert "TTFT (prefill)" in out and "bound: compute" in out and "bound: memory:hbm" in out


@pytest.mark.parametrize("config, intensity", [("llama-3.1-70b", "8.00"), ("qwen2.5-0.5b", "7.00")])
def test_model_prints_gqa_decode_intensity_equal_to_group_size(config, intensity):
    out = invoke("model", config, "--device", "h200-141gb", "--context", "32768")
    assert f"decode attention intensity │ {intensity} FLOP/B" in out


def test_model_mha_config_has_decode_intensity_one(tmp_path):
    config = {"hidden_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 16, "num_key_value_heads": 16,
              "intermediate_size": 5632, "vocab_size": 32000}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    out = invoke("model", str(path), "--device", "a100-sxm-80gb", "--context", "4096")
    assert "decode attention intensity │ 1.00 FLOP/B" in out


def test_model_bad_names_are_user_errors():
    result = CliRunner().invoke(cli, ["model", "llama-3.1-8b", "--device", "h100"], standalone_mode=False)
    assert "did you mean" in str(result.exception).lower() and "h100-sxm-80gb" in str(result.exception)
    result = CliRunner().invoke(cli, ["model", "llama-9", "--device", "h100-sxm-80gb", "--weights", "bf16"],
                                standalone_mode=False)
    assert "llama-3.1-8b" in str(result.exception)
