"""flash_offload: every policy reproduces the dense FFN (float64), the counts follow the layout and policy."""

import pytest
import torch

from reference_impls.edge import flash_model
from reference_impls.edge.flash_offload import (
    POLICIES,
    FlashFFN,
    dense_reference,
    direct_io_problem,
    page_cache_fraction,
    write_ffn_file,
)
from reference_impls.edge.sparsity_trace import activation_trace
from reference_impls.hardware.devices import get_device


def _setup(tmp_path, d, d_ff, tokens, sparsity=0.8, correlation=0.7, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    up, down_t = torch.randn(d_ff, d, generator=g), torch.randn(d_ff, d, generator=g)
    x = torch.randn(tokens, d, generator=g)
    mask = activation_trace(tokens, d_ff, sparsity, correlation, seed)
    sizes = {layout: write_ffn_file(tmp_path / f"{layout}.bin", up, down_t, layout) for layout in ("split", "bundled")}
    return x, up, down_t, mask, sizes


def _run(tmp_path, policy, d, d_ff, x, mask, size, window=3, fraction=0.5, mode="fadvise"):
    layout = POLICIES[policy][1]
    ffn = FlashFFN(tmp_path / f"{layout}.bin", d, d_ff, layout, int(fraction * size), window, mode)
    try:
        return ffn.run(x, mask, policy)
    finally:
        ffn.close()


@pytest.mark.parametrize("d, d_ff, tokens", [(16, 40, 5), (100, 77, 9), (33, 256, 12)])
@pytest.mark.parametrize("mode", ["fadvise", "none"])
def test_every_policy_equals_the_dense_ffn(tmp_path, d, d_ff, tokens, mode):
    x, up, down_t, mask, sizes = _setup(tmp_path, d, d_ff, tokens)
    reference = dense_reference(x, up, down_t, mask)
    results = {}
    for policy, (_, layout) in POLICIES.items():
        y, stats = _run(tmp_path, policy, d, d_ff, x, mask, sizes[layout], mode=mode)
        assert float((y.double() - reference).norm() / reference.norm()) < 1e-5
        assert stats.peak_resident_bytes <= stats.buffer_bytes <= sizes[layout] // 2
        results[policy] = stats
    n, w, b, both = (results[p] for p in ("naive", "windowing", "bundling", "both"))
    assert n.bytes_read == b.bytes_read == int(mask.sum()) * 2 * d * 4  # every active neuron, every token
    assert n.reads == 2 * b.reads and w.reads == 2 * both.reads  # bundling: one read per run of neurons, not two
    assert w.bytes_read == both.bytes_read < n.bytes_read
    if mode == "fadvise":
        assert n.page_cache_before in (0.0, None)


def test_windowing_reads_exactly_the_neurons_new_to_the_window(tmp_path):
    d, d_ff, tokens, window = 8, 64, 10, 3
    x, _, _, mask, sizes = _setup(tmp_path, d, d_ff, tokens)
    _, stats = _run(tmp_path, "both", d, d_ff, x, mask, sizes["bundled"], window=window, fraction=1.0)
    new = sum(int((mask[t] & ~mask[max(0, t - window):t].any(dim=0)).sum()) for t in range(tokens))
    assert stats.bytes_read == new * 2 * d * 4


def test_window_zero_is_naive(tmp_path):
    x, _, _, mask, sizes = _setup(tmp_path, 8, 50, 6, correlation=0.0)
    _, naive = _run(tmp_path, "naive", 8, 50, x, mask, sizes["split"])
    _, windowed = _run(tmp_path, "windowing", 8, 50, x, mask, sizes["split"], window=0)
    assert naive.bytes_read == windowed.bytes_read and naive.reads == windowed.reads


def test_a_tight_budget_evicts_least_recent_and_stays_correct(tmp_path):
    d, d_ff, tokens = 12, 100, 15
    x, up, down_t, mask, sizes = _setup(tmp_path, d, d_ff, tokens, sparsity=0.7, correlation=0.5)
    fraction = (int(mask.sum(dim=1).max()) + 2) / d_ff  # a little more than the busiest token
    y, stats = _run(tmp_path, "both", d, d_ff, x, mask, sizes["bundled"], window=50, fraction=fraction)
    reference = dense_reference(x, up, down_t, mask)
    assert float((y.double() - reference).norm() / reference.norm()) < 1e-5
    assert stats.peak_resident_bytes <= stats.buffer_bytes


def test_direct_io_when_the_filesystem_allows_it(tmp_path):
    if direct_io_problem(tmp_path):
        pytest.skip(direct_io_problem(tmp_path))
    d, d_ff = 1024, 48
    x, up, down_t, mask, sizes = _setup(tmp_path, d, d_ff, 4)
    y, stats = _run(tmp_path, "both", d, d_ff, x, mask, sizes["bundled"], mode="direct")
    reference = dense_reference(x, up, down_t, mask)
    assert float((y.double() - reference).norm() / reference.norm()) < 1e-5 and stats.cache_mode == "direct"


def test_bad_input_is_rejected(tmp_path):
    x, _, _, mask, sizes = _setup(tmp_path, 8, 20, 3, sparsity=0.0)
    with pytest.raises(ValueError, match="holds no neuron"):
        FlashFFN(tmp_path / "split.bin", 8, 20, "split", 10)
    with pytest.raises(ValueError, match="O_DIRECT needs rows"):
        FlashFFN(tmp_path / "split.bin", 8, 20, "split", sizes["split"], cache_mode="direct")
    with pytest.raises(ValueError, match="active neurons"):
        _run(tmp_path, "naive", 8, 20, x, mask, sizes["split"], fraction=0.25)  # 20 active, 5 slots
    with pytest.raises(ValueError, match="sparsity"):
        activation_trace(4, 4, 1.0, 0.5, 0)


def test_trace_has_the_requested_sparsity_and_correlation():
    mask = activation_trace(400, 2000, 0.9, 0.6, 3).float()
    assert mask.mean().item() == pytest.approx(0.1, abs=0.01)
    a, b = mask[1:] - mask[1:].mean(), mask[:-1] - mask[:-1].mean()
    assert (a * b).mean().item() / (a.std() * b.std()).item() == pytest.approx(0.6, abs=0.03)
    assert torch.equal(activation_trace(5, 30, 0.5, 0.5, 1), activation_trace(5, 30, 0.5, 0.5, 1))


def test_page_cache_probe_and_flash_model(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"\0" * 8192)
    assert page_cache_fraction(path) in (None, 1.0)
    phone = get_device("snapdragon-8-gen3-phone")
    small, large = flash_model.effective_bandwidth(phone, 4096), flash_model.effective_bandwidth(phone, 1 << 20)
    assert small < large < phone.tier("flash").bandwidth_bytes_per_s.value
    assert small == pytest.approx(4096 / (100e-6 + 4096 / 4.2e9))
    one = flash_model.seconds_per_token("snapdragon-8-gen3-phone", 10, 4096 * 10, 1e6, 1e5)
    assert one > 10 * 100e-6
    with pytest.raises(ValueError, match="no flash read profile"):
        flash_model.effective_bandwidth(get_device("apple-m2"), 4096)
