"""fits_on_device planner: hand-computed budgets, the largest-context boundary, bad input, the CLI."""

import pytest
from click.testing import CliRunner

from harness.cli_fit import fit_command
from reference_impls.edge import fit_planner
from reference_impls.hardware.devices import get_device
from reference_impls.hardware.transformer import load_config
from workloads.edge.fits_on_device import recount

# Qwen2.5-0.5B by hand: per layer q 896x896, k and v 896x128, o 896x896, FFN 3x896x4864 = 14,909,440 weights,
# x 24 layers = 357,826,560; tied embedding 151,936 x 896 = 136,134,656; norms 2x896 + qkv biases 18x64 per
# layer and a final norm = 71,552. KV per token 2 x 24 layers x 2 heads x 64 x 2 B = 12,288 B. Activations at a
# 512-token chunk: 512 x (2x896 + 32x64 + 3x4864 = 18,432) + 151,936 logits, x 4 B = 38,356,480 B.
QWEN_QUANTIZED, QWEN_REST = 357_826_560, 136_134_656 + 71_552
QWEN_ACT = 38_356_480
PI4_USABLE = 4e9 - 0.5e9


def test_qwen_bf16_on_pi5_4gb_matches_hand_count():
    p = fit_planner.plan(load_config("qwen2.5-0.5b"), get_device("raspberry-pi-5-4gb"), "bf16", 1024)
    assert p.parameters == 494_032_768
    assert p.weights_bytes == 2 * 494_032_768 == 988_065_536
    assert p.kv_bytes == 12_288 * 1024
    assert p.activation_bytes == QWEN_ACT
    assert p.usable_bytes == PI4_USABLE
    assert p.total_bytes == 988_065_536 + 12_582_912 + QWEN_ACT + 200e6
    assert p.fits and p.headroom_bytes == pytest.approx(2_260_995_072)
    # (3.5e9 - 988,065,536 - 38,356,480 - 200e6) / 12,288 = 185,024.25
    assert p.max_context == 185_024


def test_qwen_int4_weights_use_the_registry_bits():
    p = fit_planner.plan(load_config("qwen2.5-0.5b"), get_device("raspberry-pi-5-4gb"), "int4", 1024)
    assert p.weight_format == "int4-g128-sym" and p.weight_bits == 4.125  # 4 + 16/128: 896 = 7 groups
    assert p.weights_bytes == QWEN_QUANTIZED * 4.125 / 8 + QWEN_REST * 2 == 456_916_736
    assert p.max_context == 228_249  # (3.5e9 - 456,916,736 - 38,356,480 - 200e6) / 12,288 = 228,249.25


def test_llama8b_bf16_does_not_fit_on_pi5_8gb_but_int4_does():
    config, pi = load_config("llama-3.1-8b"), get_device("raspberry-pi-5-8gb")
    bf16 = fit_planner.plan(config, pi, "bf16", 4096)
    assert not bf16.fits and bf16.max_context == 0 and bf16.headroom_bytes < -9e9
    int4 = fit_planner.plan(config, pi, "int4", 4096)
    assert int4.fits and 4096 < int4.max_context < 20_000


@pytest.mark.parametrize("model, fmt, device, batch", [
    ("llama-3.2-1b", "int8", "snapdragon-8-gen3-phone", 1), ("qwen2.5-0.5b", "nf4", "apple-m2", 3),
    ("llama-3.1-8b", "int4", "jetson-orin-nano-8gb-25w", 1), ("smollm2-135m", "bf16", "raspberry-pi-5-4gb", 7)])
def test_max_context_is_the_boundary_and_matches_the_closed_form(model, fmt, device, batch):
    config, dev = load_config(model), get_device(device)
    p = fit_planner.plan(config, dev, fmt, 100, batch)
    precision = fit_planner.precision_for(config, fmt)
    fixed = fit_planner.RUNTIME_OVERHEAD_BYTES
    total = fit_planner._total  # noqa: SLF001 — the planner's own sum, probed at the boundary
    if p.max_context:
        assert total(config, precision, p.max_context, batch, 512, fixed) <= p.usable_bytes
    assert total(config, precision, p.max_context + 1, batch, 512, fixed) > p.usable_bytes
    assert recount(config, p.weight_bits, p.usable_bytes, 100, batch, fixed).max_context == p.max_context


def test_short_context_counts_only_its_own_activations():
    config = load_config("smollm2-135m")
    short = fit_planner.activation_bytes(config, 10, 2)
    per_token = 2 * 576 + (2 * 9 + 2 * 3) * 64 + 3 * 1536
    assert short == (2 * 10 * per_token + 2 * config.vocab_size) * 4
    assert fit_planner.activation_bytes(config, 5000, 2) == fit_planner.activation_bytes(config, 512, 2)


def test_index_bytes_reduce_the_headroom_one_for_one():
    config, pi = load_config("qwen2.5-0.5b"), get_device("raspberry-pi-5-8gb")
    base = fit_planner.plan(config, pi, "int8", 2048)
    with_index = fit_planner.plan(config, pi, "int8", 2048, index_bytes=fit_planner.vector_index_bytes(10**6, 384))
    assert base.headroom_bytes - with_index.headroom_bytes == pytest.approx(1.536e9)
    assert with_index.max_context < base.max_context


def test_modeled_speeds_follow_the_bytes():
    config, pi = load_config("llama-3.2-1b"), get_device("raspberry-pi-5-8gb")
    bf16, int4 = (fit_planner.plan(config, pi, f, 1024) for f in ("bf16", "int4"))
    assert int4.decode_tokens_per_s > 1.5 * bf16.decode_tokens_per_s > 0


def test_bad_input_names_what_is_allowed():
    config, pi = load_config("qwen2.5-0.5b"), get_device("raspberry-pi-5-8gb")
    with pytest.raises(ValueError, match="unknown format 'int5'"):
        fit_planner.plan(config, pi, "int5", 1024)
    with pytest.raises(ValueError, match="context and batch must be >= 1"):
        fit_planner.plan(config, pi, "bf16", 0)
    with pytest.raises(ValueError, match="index_bytes"):
        fit_planner.plan(config, pi, "bf16", 10, index_bytes=-1)


def test_cli_prints_one_row_per_combination_and_rejects_unknown_devices():
    result = CliRunner().invoke(fit_command, ["qwen2.5-0.5b", "--device", "pi5-4gb", "--device", "m2",
                                              "--format", "int4", "--context", "1024"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| qwen2.5-0.5b")]
    assert len(rows) == 2 and "228,249" in rows[0]
    bad = CliRunner().invoke(fit_command, ["qwen2.5-0.5b", "--device", "pi7"])
    assert bad.exit_code != 0 and "unknown device 'pi7'" in bad.output
