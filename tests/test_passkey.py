"""Passkey prompts, KV-cache surgery on a tiny random Llama, and one real SmolLM2 answer."""

import re

import pytest
import torch

from reference_impls.models import passkey as pk
from reference_impls.models.kv_generation import (
    allocated_bytes,
    eager_attention,
    generate_with_cache_policy,
    layer_kv,
)

transformers = pytest.importorskip("transformers")


class WordTokenizer:
    """Stand-in tokenizer: one id per whitespace-separated word, the same word always the same id."""

    chat_template = None
    eos_token_id = None

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [self.vocab.setdefault(w, len(self.vocab) + 1) for w in text.split()]}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        words = {i: w for w, i in self.vocab.items()}
        return " ".join(words[i] for i in ids)


# --- the prompt generator -------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [120, 257, 1000])
@pytest.mark.parametrize("depth", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_prompt_has_the_exact_length_and_the_needle_at_its_depth(target, depth):
    tok = WordTokenizer()
    prompt = pk.make_passkey_prompt(tok, target, depth, seed=7)
    assert len(prompt.token_ids) == target
    needle = tok.decode(list(prompt.token_ids[prompt.needle_start:prompt.needle_end]))
    assert needle == pk.NEEDLE.format(passkey=prompt.passkey)
    longest_sentence = max(len(s.split()) for s in pk.FILLER_SENTENCES)
    assert abs(prompt.depth - depth) <= longest_sentence / prompt.filler_tokens
    text = tok.decode(list(prompt.token_ids))
    assert text.startswith(pk.INTRO) and text.endswith(f"{pk.QUESTION} {pk.ANSWER_PREFIX}")
    assert text.count(prompt.passkey) == 2  # only in the needle


def test_prompt_is_seeded():
    tok = WordTokenizer()
    a, b, c = (pk.make_passkey_prompt(tok, 400, 0.5, seed=s) for s in (3, 3, 4))
    assert a == b
    assert a.passkey != c.passkey and a.token_ids != c.token_ids
    assert re.fullmatch(r"[1-9]\d{4}", a.passkey)


def test_prompt_rejects_bad_depth_and_too_short_target():
    tok = WordTokenizer()
    with pytest.raises(ValueError, match="depth"):
        pk.make_passkey_prompt(tok, 400, 1.5, seed=0)
    with pytest.raises(ValueError, match="minimum is"):
        pk.make_passkey_prompt(tok, 20, 0.5, seed=0)


@pytest.mark.parametrize("answer, right", [(" 12345.", True), (" The pass key is 12345. Remember", True),
                                           (" 123456", False), (" 1234 5", False), (" no idea", False),
                                           ("", False), (" 54321 or 12345", False)])
def test_scoring_is_the_exact_first_number(answer, right):
    assert pk.passkey_correct(answer, "12345") is right


# --- cache surgery on a tiny random Llama ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         initializer_range=0.3, attn_implementation="sdpa")
    return LlamaForCausalLM(config).eval()


def _prompt(length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, 97, (length,), generator=torch.Generator().manual_seed(seed))


def _keep_all(layer, keys, values, scores):
    return keys, values, float(keys.nbytes + values.nbytes)


def _greedy_without_cache(model, prompt: torch.Tensor, steps: int) -> tuple[list[int], list[torch.Tensor]]:
    ids, tokens, logits = prompt.view(1, -1), [], []
    with torch.inference_mode():
        for _ in range(steps):
            last = model(ids, use_cache=False).logits[0, -1].float()
            logits.append(last)
            tokens.append(int(last.argmax()))
            ids = torch.cat([ids, torch.tensor([[tokens[-1]]])], dim=1)
    return tokens, logits


@pytest.mark.parametrize("length, needs_scores", [(40, False), (97, False), (97, True), (30, True)])
def test_full_policy_decodes_exactly_like_no_compression(tiny, length, needs_scores):
    prompt = _prompt(length, seed=length)
    run = generate_with_cache_policy(tiny, None, prompt, _keep_all, 6, needs_scores=needs_scores, window=16,
                                     return_logits=True)
    tokens, logits = _greedy_without_cache(tiny, prompt, 6)
    assert run.token_ids == tokens
    for got, want in zip(run.step_logits, logits, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert run.kept_tokens == length and run.kv_bytes_kept == run.kv_bytes_full == 2 * 2 * 2 * length * 8 * 4
    assert run.decode_steps == 5 and run.prefill_s > 0


def _drop_middle(first: int, last: int):
    def policy(layer, keys, values, scores):
        index = torch.cat([torch.arange(first), torch.arange(keys.shape[1] - last, keys.shape[1])])
        kept_k, kept_v = keys[:, index].clone(), values[:, index].clone()
        return kept_k, kept_v, float(kept_k.nbytes + kept_v.nbytes)

    return policy


def _logits_with_dropped_keys(model, prompt: torch.Tensor, generated: list[int], first: int, last: int):
    """Full forward over prompt + generated tokens in which generated tokens cannot see the dropped keys."""
    ids = torch.cat([prompt, torch.tensor(generated, dtype=torch.long)]).view(1, -1)
    total, length = ids.shape[1], prompt.numel()
    allowed = torch.ones(total, total).tril().bool()
    allowed[length:, first:length - last] = False
    mask = torch.zeros(1, 1, total, total).masked_fill(~allowed, torch.finfo(torch.float32).min)
    with torch.inference_mode(), eager_attention(model):
        return model(ids, attention_mask=mask, use_cache=False).logits[0, length - 1:].float()


def test_decoding_continues_at_the_original_positions(tiny):
    prompt, first, last = _prompt(80, seed=5), 6, 20
    run = generate_with_cache_policy(tiny, None, prompt, _drop_middle(first, last), 5, return_logits=True)
    assert run.kept_tokens == first + last and run.kv_bytes_kept < run.kv_bytes_full
    want = _logits_with_dropped_keys(tiny, prompt, run.token_ids[:-1], first, last)
    torch.testing.assert_close(torch.stack(run.step_logits), want, rtol=1e-4, atol=1e-4)
    # renumbering the kept tokens (the bug this guards against) gives different logits
    shortened = torch.cat([prompt[:first], prompt[-last:]])
    _, renumbered = _greedy_without_cache(tiny, shortened, 2)
    assert not torch.allclose(run.step_logits[1], renumbered[1], atol=1e-3)


def test_score_policies_get_causal_window_scores_equal_to_a_full_eager_pass(tiny):
    prompt, window, seen = _prompt(50, seed=9), 16, {}

    def record(layer, keys, values, scores):
        seen[layer] = scores.clone()
        return _keep_all(layer, keys, values, scores)

    generate_with_cache_policy(tiny, None, prompt, record, 1, needs_scores=True, window=window)
    with torch.inference_mode(), eager_attention(tiny):
        eager = tiny(prompt.view(1, -1), output_attentions=True, use_cache=False).attentions
    assert tiny.config._attn_implementation == "sdpa"  # switched back
    for layer, scores in seen.items():
        assert scores.shape == (4, window, 50)
        torch.testing.assert_close(scores.sum(-1), torch.ones(4, window))
        future = torch.arange(50)[None, :] > torch.arange(50 - window, 50)[:, None]  # [W, L]
        assert bool((scores[:, future] == 0).all())
        torch.testing.assert_close(scores, eager[layer][0, :, -window:].float(), rtol=1e-5, atol=1e-6)


def test_policy_adapters_on_the_tiny_model(tiny):
    from reference_impls.models.cache_policies import make_policy_fn

    prompt = _prompt(100, seed=2)
    full_bytes = 2 * 2 * 2 * 100 * 8 * 4  # K+V, layers, kv_heads, tokens, head_dim, float32
    snap = generate_with_cache_policy(tiny, None, prompt, make_policy_fn("snapkv", 0.25, window=16), 3,
                                      needs_scores=True, window=16)
    assert snap.kept_tokens == 25 and snap.kv_bytes_full == full_bytes
    assert snap.kv_bytes_kept == snap.kv_bytes_claimed == full_bytes // 4
    kivi = generate_with_cache_policy(tiny, None, prompt, make_policy_fn("kivi", 1.0, kivi_bits=2), 3)
    assert kivi.kept_tokens == 100 and kivi.kv_bytes_kept == full_bytes  # dequantized: full size held
    assert kivi.kv_bytes_claimed == full_bytes * 2 / 32
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy_fn("lru", 0.5)


def test_policy_output_of_the_wrong_shape_is_rejected(tiny):
    def bad(layer, keys, values, scores):
        return keys[:1], values[:1], 1.0

    with pytest.raises(ValueError, match="kv_heads, kept, head_dim"):
        generate_with_cache_policy(tiny, None, _prompt(20), bad, 2)


def test_allocated_bytes_counts_the_storage_behind_a_view():
    base = torch.randn(4, 100)
    assert allocated_bytes([base[:, :10]]) == base.nbytes
    assert allocated_bytes([base[:, :10].clone()]) == 4 * 10 * 4
    assert allocated_bytes([base, base[1:]]) == base.nbytes


def test_cache_layout_is_readable(tiny):
    from transformers import DynamicCache

    cache = DynamicCache()
    with torch.inference_mode():
        tiny(_prompt(12).view(1, -1), past_key_values=cache, use_cache=True)
    keys, values = layer_kv(cache, 1)
    assert keys.shape == values.shape == (1, 2, 12, 8)


# --- one real SmolLM2 answer ----------------------------------------------------------------------------------

def test_smollm2_answers_a_short_passkey_prompt():
    from reference_impls.models import smollm2
    from reference_impls.models.cache_policies import make_policy_fn

    missing = smollm2.missing_reason()
    if missing:
        pytest.skip(f"SmolLM2 not available: {missing}")
    loaded = smollm2.load_smollm2()
    prompt = pk.make_passkey_prompt(loaded.tokenizer, 400, 0.5, seed=1)
    run = generate_with_cache_policy(loaded.model, loaded.tokenizer, torch.tensor(prompt.token_ids),
                                     make_policy_fn("full", 1.0), 8)
    assert pk.passkey_correct(run.text, prompt.passkey), run.text
    assert run.kv_bytes_full == 400 * 2 * 30 * 3 * 64 * 4  # tokens x K,V x layers x kv_heads x head_dim x fp32


# --- the workload's own rules ---------------------------------------------------------------------------------

def _workload():
    from harness.registry import REGISTRY

    return REGISTRY.load().workload("passkey_retrieval")


def _params(**overrides):
    params = {p.name: p.default for p in _workload().params}
    params.update(overrides)
    return params


def test_workload_marks_meaningless_or_impossible_cases_unsupported():
    from reference_impls.models import smollm2

    workload = _workload()
    if smollm2.missing_reason():
        assert "SmolLM2 is not available" in workload.unsupported("smollm2_cpu", _params(), "cpu")
        return
    assert workload.unsupported("smollm2_cpu", _params(policy="snapkv", budget=0.25), "cpu") is None
    assert "budget must be 1.0" in workload.unsupported("smollm2_cpu", _params(policy="full", budget=0.5), "cpu")
    assert "8192" in workload.unsupported("smollm2_cpu", _params(context_tokens=9000), "cpu")
    with pytest.raises(ValueError, match="depth"):
        workload.inputs(_params(depth=1.5), "cpu", 0)


def test_cost_counts_prefill_once_and_decode_over_the_kept_tokens():
    workload = _workload()
    full = workload.cost(_params(context_tokens=2048), "smollm2_cpu")
    quarter = workload.cost(_params(context_tokens=2048, policy="snapkv", budget=0.25), "smollm2_cpu")
    longer = workload.cost(_params(context_tokens=4096), "smollm2_cpu")
    params_135m = 134_515_008  # SmolLM2-135M, tied embeddings
    assert 2 * params_135m * 2048 * 0.9 < full.flops < 2 * params_135m * 2048 * 1.5
    assert quarter.flops < full.flops and quarter.footprint_bytes > full.footprint_bytes  # attention maps
    assert longer.flops > 2 * full.flops and full.total_bytes > 0


def test_check_accepts_any_completed_answer_and_rejects_broken_records():
    from workloads.long_context.passkey import PasskeyAnswer

    workload = _workload()
    wrong = PasskeyAnswer(" 11111.", False, 7, 1024, 256, 1.0, 0.01, 0.05, 1000, 250, 250.0)
    assert workload.check(wrong, "12345", None).passed
    assert workload.quality(wrong, "12345") == {"quality.passkey_correct": 0.0}
    silent = PasskeyAnswer("", False, 0, 1024, 256, 1.0, 0.01, 0.0, 1000, 250, 250.0)  # stopped at end-of-text
    assert workload.check(silent, "12345", None).passed
    for broken in workload.wrong_answers(wrong):
        assert not workload.check(broken, "12345", None).passed
