"""H2O at decode time against a plain float64 simulation written from the paper's Algorithm 1."""

import math

import pytest
import torch

from reference_impls.kernels.h2o_decode import H2OCache


def _simulate(keys, values, prefill_scores, steps, budget, recent):
    """Per head, with Python lists: keep recent + heaviest, then per step attend, accumulate, evict one."""
    kv_heads, length, dim = keys.shape
    group = prefill_scores.shape[0] // kv_heads
    outputs, kept_per_step = [], []
    caches = []
    for h in range(kv_heads):
        accumulated = prefill_scores[h * group:(h + 1) * group].sum(dim=(0, 1)).tolist()
        keep = min(budget, length)
        forced = list(range(length - min(recent, keep), length))
        others = sorted((p for p in range(length) if p not in forced), key=lambda p: (-accumulated[p], p))
        positions = sorted(forced + others[: keep - len(forced)])
        caches.append({"pos": positions, "acc": {p: accumulated[p] for p in positions},
                       "k": {p: keys[h, p] for p in positions}, "v": {p: values[h, p] for p in positions}})
    for step, (query, key, value) in enumerate(steps):
        new = length + step
        out = torch.empty(kv_heads * group, dim, dtype=torch.float64)
        for h, cache in enumerate(caches):
            cache["pos"].append(new)
            cache["acc"][new], cache["k"][new], cache["v"][new] = 0.0, key[h], value[h]
            k = torch.stack([cache["k"][p] for p in cache["pos"]])
            v = torch.stack([cache["v"][p] for p in cache["pos"]])
            probs = torch.softmax(query[h * group:(h + 1) * group] @ k.T / math.sqrt(dim), dim=-1)  # [g, n]
            out[h * group:(h + 1) * group] = probs @ v
            for i, p in enumerate(cache["pos"]):
                cache["acc"][p] += float(probs[:, i].sum())
            if len(cache["pos"]) > budget:
                candidates = [p for p in cache["pos"] if p <= new - recent]
                victim = min(candidates, key=lambda p: (cache["acc"][p], p))
                cache["pos"].remove(victim)
        outputs.append(out)
        kept_per_step.append([list(c["pos"]) for c in caches])
    return outputs, kept_per_step


@pytest.mark.parametrize("kv_heads, group, length, dim, budget, recent", [
    (2, 1, 23, 8, 10, None), (1, 3, 40, 16, 12, 4), (2, 2, 9, 4, 12, 0),
])
def test_stepwise_h2o_matches_the_paper_simulation(kv_heads, group, length, dim, budget, recent):
    g = torch.Generator().manual_seed(length)
    keys, values = torch.randn(2, kv_heads, length, dim, generator=g, dtype=torch.float64)
    scores = torch.rand(kv_heads * group, 5, length, generator=g, dtype=torch.float64).softmax(-1)
    steps = [(torch.randn(kv_heads * group, dim, generator=g, dtype=torch.float64),
              torch.randn(kv_heads, dim, generator=g, dtype=torch.float64),
              torch.randn(kv_heads, dim, generator=g, dtype=torch.float64)) for _ in range(15)]
    recent_tokens = budget // 2 if recent is None else recent
    expected_out, expected_kept = _simulate(keys, values, scores, steps, budget, recent_tokens)
    cache = H2OCache.from_prefill(keys, values, scores, budget, recent)
    for (query, key, value), want_out, want_kept in zip(steps, expected_out, expected_kept, strict=True):
        torch.testing.assert_close(cache.step(query, key, value), want_out, atol=1e-12, rtol=1e-10)
        assert cache.positions.tolist() == want_kept
        assert cache.keys.shape[1] == min(budget, cache.next_position)
        for h in range(kv_heads):
            assert torch.equal(cache.keys[h], torch.stack([keys[h, p] if p < length else
                                                           steps[p - length][1][h] for p in want_kept[h]]))


def test_recent_tokens_are_never_evicted_and_heavy_hitters_survive():
    g = torch.Generator().manual_seed(0)
    keys, values = torch.randn(2, 1, 30, 8, generator=g)
    scores = torch.full((1, 4, 30), 1e-3)
    scores[0, :, 7] = 0.9  # a heavy hitter from the prompt
    cache = H2OCache.from_prefill(keys, values, scores, budget=8, recent=4)
    for _ in range(20):
        cache.step(keys[:, 7] * 3.0, torch.randn(1, 8, generator=g), torch.randn(1, 8, generator=g))
        newest = cache.next_position - 1
        assert set(range(newest - 3, newest + 1)) <= set(cache.positions[0].tolist())
        assert 7 in cache.positions[0].tolist()
        assert cache.keys.shape == (1, 8, 8)


def test_bad_arguments_raise_a_clear_value_error():
    keys = torch.randn(1, 10, 4)
    with pytest.raises(ValueError, match="recent <= budget"):
        H2OCache.from_prefill(keys, keys, torch.rand(1, 2, 10), budget=4, recent=5)
    with pytest.raises(ValueError, match="scores must be"):
        H2OCache.from_prefill(keys, keys, torch.rand(1, 2, 9), budget=4)
    cache = H2OCache.from_prefill(keys, keys, torch.rand(1, 2, 10), budget=4)
    with pytest.raises(ValueError, match="need query"):
        cache.step(torch.randn(1, 4), torch.randn(2, 4), torch.randn(2, 4))
