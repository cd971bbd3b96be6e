"""patch_inference: patch-by-patch equals layer-by-layer (float64), tracked peaks equal the analytic ones."""

import pytest
import torch

from reference_impls.edge import patch_inference as pi


def _run(size, blocks, patches, width=1.0, seed=0):
    stage = pi.mobilenet_v2_stage(blocks, width)
    weights = pi.init_weights(stage, seed, torch.float64)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed + 7), dtype=torch.float64)
    layer_live, patch_live = pi.LiveTracker(), pi.LiveTracker()
    y_layers = pi.run_layers(x, stage, weights, layer_live)
    y_patches = pi.run_patches(x, stage, weights, patches, patch_live)
    return stage, y_layers, y_patches, layer_live.peak, patch_live.peak


def _reference(x, stage, weights):
    """Plain torch convs with symmetric padding, written out independently of run_layers."""
    h = x
    for b, w in zip(stage, weights, strict=True):
        if b.stem:
            h = torch.nn.functional.conv2d(h, w["conv3"], w["bias3"], stride=2, padding=1).clamp(0, 6)
            continue
        e = torch.nn.functional.conv2d(h, w["expand"], w["bias_e"]).clamp(0, 6) if "expand" in w else h
        d = torch.nn.functional.conv2d(e, w["conv3"], w["bias3"], stride=b.stride, padding=1, groups=b.hidden)
        out = torch.nn.functional.conv2d(d.clamp(0, 6), w["project"], w["bias_p"])
        h = out + h if b.residual else out
    return h


@pytest.mark.parametrize("size, blocks, patches, width", [
    (40, 3, 2, 1.0), (37, 4, 3, 0.5), (64, 6, 4, 0.35), (29, 2, 5, 1.0), (50, 1, 1, 1.0)])
def test_patches_equal_layers_and_peaks_match_the_analytic_count(size, blocks, patches, width):
    stage, y_layers, y_patches, layer_peak, patch_peak = _run(size, blocks, patches, width)
    weights = pi.init_weights(stage, 0, torch.float64)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    reference = _reference(x, stage, weights)
    assert torch.allclose(y_layers, reference, rtol=1e-12, atol=1e-12)
    assert torch.allclose(y_patches, reference, rtol=1e-12, atol=1e-12)
    assert layer_peak == pi.analytic_peak(stage, size)
    assert patch_peak == pi.analytic_peak(stage, size, patches)


def test_mobilenet_v2_at_224_matches_mcunet_and_patches_cut_the_peak():
    stage = pi.mobilenet_v2_stage(4)
    assert pi.mcunet_peak(stage, 224) == 16 * 112**2 + 96 * 112**2 == 1372 * 1024
    layer_peak = pi.analytic_peak(stage, 224)
    assert layer_peak == 16 * 112**2 + 96 * 112**2 + 96 * 56**2  # block 2: input + expanded + depthwise output
    assert layer_peak / pi.analytic_peak(stage, 224, 3) > 4


def test_recompute_overhead_grows_with_patches_and_is_zero_for_one():
    stage = pi.mobilenet_v2_stage(4)
    base = pi.stage_flops(stage, 96)
    ratios = [pi.stage_flops(stage, 96, p) / base for p in (1, 2, 3, 4)]
    assert ratios[0] == 1.0 and ratios == sorted(ratios) and ratios[-1] > 1.1
    # stem alone, hand count: 48x48 outputs x 32 channels x 27 MACs x 2
    assert pi.stage_flops(pi.mobilenet_v2_stage(0), 96) == 48 * 48 * 32 * 27 * 2


def test_tiles_cover_ragged_sizes_and_bad_input_is_rejected():
    assert pi.tiles(10, 3) == [(0, 3), (3, 6), (6, 10)]
    with pytest.raises(ValueError, match="patches must be in 1..4"):
        pi.tiles(4, 5)
    with pytest.raises(ValueError, match="blocks must be in 0..6"):
        pi.mobilenet_v2_stage(7)
    with pytest.raises(ValueError, match="square inputs only"):
        pi.run_patches(torch.randn(1, 3, 16, 20), pi.mobilenet_v2_stage(1), pi.init_weights(
            pi.mobilenet_v2_stage(1), 0), 2, pi.LiveTracker())
