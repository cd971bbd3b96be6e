"""Model fidelity under a weight format: every nn.Linear weight of a real model replaced by its round trip
through one registry format (fake quantization, reference_impls/models/fake_quant.py), then evaluated.

  minilm   all-MiniLM-L6-v2: mean cosine between the quantized and fp32 sentence embeddings of every text
           embedded (reference-text sentences, retrieval queries and documents), and recall@10 of the seeded
           retrieval corpus (reference_impls/models/text_corpus.py), beside the fp32 model's recall
  smollm2  SmolLM2-135M-Instruct: perplexity on the reference text (reference_impls/models/fidelity_eval.py
           defines it: W windows of T tokens, tokens 1..T-1 of each scored), its change from the model as
           loaded, and the mean KL(p_fp32 || p_quant) over the scored tokens. "As loaded" is float32
           dequantized from the package's Q4_1 GGUF: the baseline is Q4_1's model, not the original bf16 one
  both     weight SQNR over every quantized layer; effective bits and stored bytes of the linear layers

The baseline implementation `fp32` evaluates the model as loaded; `fake_quant` quantizes every linear layer
(lm_head excluded; formats needing calibration get each layer's inputs on the calibration text, captured in one
pass of the unquantized model) and evaluates. The timed call is quantize + evaluate; both are also counted
separately inside the call. Fidelity is the measurement, so `check` asks for a complete, self-consistent result
(the fp32 baseline must also reproduce the reference), never for a fidelity level.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time

import torch

from harness import metrics
from harness.case import Cost, Param
from harness.registry import Check, Workload, implementation, register_workload, rel_l2_error
from reference_impls.hardware import transformer as tf
from reference_impls.models import fake_quant, fidelity_eval, minilm, real_layers, smollm2, text_corpus
from workloads.quantization.quant_error import DTYPES, EFFECTIVE_BITS, QUANTIZE_FLOPS_PER_WEIGHT, SQNR, STORAGE

MODELS = ("minilm", "smollm2")
RECALL_K = 10
UNIT_NORM_TOLERANCE = 1e-3

COSINE = metrics.declare("quality.embedding_cosine", "1", "higher",
                         "mean cosine of quantized vs fp32 MiniLM embeddings")
RECALL = metrics.declare("quality.recall_at_10", "1", "higher", "recall@10 on the seeded retrieval corpus")
RECALL_FP32 = metrics.declare("quality.recall_at_10_fp32", "1", "higher",
                              "recall@10 of the fp32 model on the same corpus (reference)")
PERPLEXITY = metrics.declare("quality.perplexity", "1", "lower", "perplexity on the reference text")
PERPLEXITY_FP32 = metrics.declare("quality.perplexity_fp32", "1", "lower",
                                  "perplexity of the model as loaded (SmolLM2: dequantized Q4_1), reference")
PERPLEXITY_DELTA = metrics.declare("quality.perplexity_delta", "1", "lower",
                                   "perplexity minus the model-as-loaded perplexity")
KL = metrics.declare("quality.kl_to_fp32_nats", "nat", "lower",
                     "mean KL(p_as_loaded || p_quantized) per scored token")
QUANTIZE_S = metrics.declare("fidelity.quantize_s", "s", "lower", "quantizing every linear layer, inside the call")
EVALUATE_S = metrics.declare("fidelity.evaluate_s", "s", "lower", "evaluating the (quantized) model, inside the call")


@dataclasses.dataclass(frozen=True)
class FidelityResult:
    """One evaluated model: what its linear layers store and what it produced on the fidelity texts."""

    model: str
    format: str  # "fp32" for the model as loaded
    layers: tuple[fake_quant.LayerQuantization, ...]
    embeddings: torch.Tensor | None = None  # minilm [texts, 384]
    recall_at_10: float | None = None
    log_probs: torch.Tensor | None = None  # smollm2 [W, T-1, V]
    nll: torch.Tensor | None = None  # [W, T-1]
    perplexity: float | None = None
    quantize_s: float = 0.0
    evaluate_s: float = 0.0

    @property
    def outputs(self) -> torch.Tensor:
        return self.embeddings if self.model == "minilm" else self.log_probs


@register_workload
class QuantFidelity(Workload):
    name = "quant_fidelity"
    family = "quantization"
    description = ("Fake-quantize every linear layer of a real model with one registry format: all-MiniLM-L6-v2 "
                   "embedding cosine and retrieval recall@10, SmolLM2-135M perplexity change and KL vs the model "
                   "as loaded.")
    sweep_param = "format"
    primary_metric = COSINE.name
    params = (
        Param("format", str, "int4-g128", doc="a registry name (reference_impls.kernels.quant.formats)"),
        Param("model", str, "minilm", choices=MODELS),
        Param("sentences", int, 32, minimum=1, doc="minilm: reference-text sentences embedded"),
        Param("documents", int, 128, minimum=1, doc="minilm: retrieval documents"),
        Param("queries", int, 48, minimum=1, doc="minilm: retrieval queries (one relevant document each)"),
        Param("windows", int, 2, minimum=1, doc="smollm2: perplexity windows"),
        Param("window_tokens", int, 512, minimum=2, doc="smollm2: tokens per window (T)"),
        Param("calibration_tokens", int, 1024, minimum=1, doc="rows per layer for formats needing calibration"),
        Param("dtype", str, "float32", choices=tuple(DTYPES), doc="weights are cast to it before quantizing "
              "(dfloat11 takes bfloat16); the model computes in float32"),
    )
    contract_params = {"sentences": 8, "documents": 16, "queries": 4, "calibration_tokens": 64}

    def version(self) -> str:
        """The source hash joined with the reference text's sha256: a Python whose pydoc topics differ measures
        other text, so its results compare as incomparable rather than as a regression."""
        texts = "".join(text_corpus.reference_text(part).sha256 for part in text_corpus.PARTS)
        return hashlib.sha256((super().version() + texts).encode()).hexdigest()[:12]

    def inputs(self, params: dict, device: str, seed: int) -> dict:
        from reference_impls.kernels.quant import formats

        formats.get_format(params["format"])  # ValueError naming the close matches
        if params["model"] == "minilm":
            return _minilm_inputs(params, seed)
        windows = [real_layers.smollm2_window("evaluation", params["window_tokens"], seed * params["windows"] + w)
                   for w in range(params["windows"])]
        calibration = real_layers.smollm2_window("calibration", params["calibration_tokens"], seed)
        return {"token_ids": torch.stack(windows), "calibration_ids": calibration[None]}

    def reference(self, inputs: dict, params: dict) -> dict:
        """The model as loaded, evaluated on the same texts."""
        result = as_loaded(inputs, params)
        return {"model": params["model"], "result": result, "inputs": inputs,
                "linear_weights": sum(math.prod(layer.shape) for layer in result.layers)}

    def check(self, output: FidelityResult, reference: dict, baseline_error: float | None) -> Check:
        """Complete and self-consistent (finite, unit-norm embeddings / normalized log-probs, reported recall,
        NLL and perplexity recomputed from them, stored bits agreeing with bytes); the fp32 baseline must
        also reproduce the reference run within sqrt(eps)."""
        rule = "complete and self-consistent result; fidelity is the quality metric, never a failure"
        problem = _result_problem(output, reference)
        if problem:
            return Check(False, 1.0, 0.0, f"{rule}; {problem}")
        if output.format != "fp32":
            return Check(True, 0.0, 0.0, rule)
        error = rel_l2_error(output.outputs, reference["result"].outputs)
        tolerance = torch.finfo(torch.float32).eps ** 0.5
        return Check(error <= tolerance, error, tolerance, f"{rule}; as loaded: error vs reference <= sqrt(eps)")

    def quality(self, output: FidelityResult, reference: dict) -> dict[str, float]:
        """Fidelity, plus the weight SQNR over every quantized layer (absent when exact: it is infinite)."""
        ref = reference["result"]
        sqnr = fake_quant.weight_sqnr_db(output.layers)
        found = {SQNR.name: sqnr} if math.isfinite(sqnr) else {}
        if output.model == "minilm":
            cosine = (output.embeddings.double() * ref.embeddings.double()).sum(1).mean()
            return {**found, COSINE.name: float(cosine), RECALL.name: output.recall_at_10,
                    RECALL_FP32.name: ref.recall_at_10}
        return {**found, PERPLEXITY.name: output.perplexity, PERPLEXITY_FP32.name: ref.perplexity,
                PERPLEXITY_DELTA.name: output.perplexity - ref.perplexity,
                KL.name: fidelity_eval.mean_kl(ref.log_probs, output.log_probs)}

    def counters(self, output: FidelityResult, params: dict) -> dict[str, float]:
        stored = sum(layer.storage_bytes for layer in output.layers)
        weights = sum(math.prod(layer.shape) for layer in output.layers)
        return {EFFECTIVE_BITS.name: 8.0 * stored / weights, STORAGE.name: float(stored),
                QUANTIZE_S.name: output.quantize_s, EVALUATE_S.name: output.evaluate_s}

    def wrong_answers(self, output: FidelityResult) -> list[FidelityResult]:
        """A NaN output, outputs scaled by 1.5, a misreported score (recall or perplexity), and a layer
        reporting half the bits it stores."""
        poisoned = output.outputs.clone()
        poisoned.view(-1)[0] = float("nan")
        field = "embeddings" if output.model == "minilm" else "log_probs"
        score = ({"recall_at_10": output.recall_at_10 + 0.25} if output.model == "minilm"
                 else {"perplexity": output.perplexity * 1.1})
        first = output.layers[0]
        halved = dataclasses.replace(first, effective_bits=first.effective_bits / 2)
        return [dataclasses.replace(output, **{field: poisoned}),
                dataclasses.replace(output, **{field: output.outputs * 1.5}),
                dataclasses.replace(output, **score),
                dataclasses.replace(output, layers=(halved, *output.layers[1:]))]

    def unsupported(self, impl: str, params: dict, device: str) -> str | None:
        missing = (minilm if params["model"] == "minilm" else smollm2).missing_reason()
        return f"{params['model']} is not available: {missing}" if missing else None

    def cost(self, params: dict, impl: str) -> Cost:
        """Evaluate (both impls) + quantize (fake_quant). Evaluation, float32: MiniLM 2·tokens·(linear weights)
        + 4·len²·hidden per layer and text (token counts of seed 0's texts), bytes = weights once + the token
        embeddings read; SmolLM2 per window transformer.prefill_cost (float32) + the full-vocabulary head at
        every scored position (2·(T-1)·hidden·vocab) + log-softmax. Quantize: ~8 FLOPs per linear weight, read W
        and write Ŵ (float32); calibration formats add a capture forward over the calibration rows and
        2·rows·in² per layer (GPTQ's Hessian). Footprint: float32 weights twice (original + round trip)."""
        flops, traffic, weights, linear = _evaluate_cost(params)
        if impl == "fake_quant":
            flops += QUANTIZE_FLOPS_PER_WEIGHT * sum(math.prod(shape) for shape in linear)
            traffic += 8.0 * sum(math.prod(shape) for shape in linear)
            from reference_impls.kernels.quant import formats

            if formats.get_format(params["format"]).needs_calibration:
                rows = params["calibration_tokens"]
                flops += 2.0 * rows * sum(math.prod(shape) for shape in linear)
                flops += 2.0 * rows * sum(shape[1] ** 2 for shape in linear)
                traffic += 4.0 * rows * sum(shape[1] for shape in linear)
        return Cost(flops=flops, bytes={"dram": traffic}, footprint_bytes=weights + 4.0 * sum(
            math.prod(shape) for shape in linear), dtype="float32")


def _minilm_inputs(params: dict, seed: int) -> dict:
    encoder = minilm.load_minilm()
    sentences = text_corpus.sample_sentences("evaluation", params["sentences"], seed)
    corpus = text_corpus.retrieval_corpus(params["documents"], params["queries"], seed)
    lists = minilm.token_ids(encoder, [*sentences, *corpus.queries, *corpus.documents])
    pool = text_corpus.reference_sentences("calibration")
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed)).tolist()
    calibration, rows = [], 0
    for ids in minilm.token_ids(encoder, [pool[i] for i in order]):
        if rows >= params["calibration_tokens"]:
            break
        calibration.append(ids)
        rows += len(ids)
    return {**_flat(lists, "token_ids", "lengths"), **_flat(calibration, "calibration_ids", "calibration_lengths"),
            "counts": (len(sentences), len(corpus.queries), len(corpus.documents)), "relevant": corpus.relevant}


def _flat(lists: list[list[int]], ids_key: str, lengths_key: str) -> dict[str, torch.Tensor]:
    return {ids_key: torch.tensor([t for ids in lists for t in ids], dtype=torch.long),
            lengths_key: torch.tensor([len(ids) for ids in lists], dtype=torch.long)}


def _unflat(ids: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    return [chunk.tolist() for chunk in torch.split(ids, lengths.tolist())]


def _evaluate(model: torch.nn.Module, inputs: dict, params: dict) -> dict:
    if params["model"] == "minilm":
        evaluation = fidelity_eval.evaluate_encoder(minilm.load_minilm(), model,
                                                    _unflat(inputs["token_ids"], inputs["lengths"]), inputs["counts"],
                                                    inputs["relevant"], RECALL_K)
        return {"embeddings": evaluation.embeddings, "recall_at_10": evaluation.recall_at_10}
    evaluation = fidelity_eval.evaluate_language_model(model, inputs["token_ids"])
    return {"log_probs": evaluation.log_probs, "nll": evaluation.nll, "perplexity": evaluation.perplexity}


def _model(params: dict) -> torch.nn.Module:
    return minilm.load_minilm().model if params["model"] == "minilm" else smollm2.load_smollm2().model


def _calibration(model: torch.nn.Module, inputs: dict, params: dict) -> dict[str, torch.Tensor]:
    names = [name for name, _ in fake_quant.linear_layers(model)]
    if params["model"] == "minilm":
        batches = minilm.batches(_unflat(inputs["calibration_ids"], inputs["calibration_lengths"]), 16)
    else:
        batches = [{"input_ids": inputs["calibration_ids"]}]
    return fake_quant.capture_linear_inputs(model, names, batches, params["calibration_tokens"])


def _result_problem(output: object, reference: dict) -> str | None:
    if not isinstance(output, FidelityResult) or output.model != reference["model"]:
        return f"expected a FidelityResult for {reference['model']}, got {type(output).__name__}"
    ref, inputs = reference["result"], reference["inputs"]
    if sum(math.prod(layer.shape) for layer in output.layers) != reference["linear_weights"]:
        return "the layer records do not cover every linear weight of the model"
    for layer in output.layers:
        if not (layer.effective_bits > 0 and math.isclose(layer.storage_bytes * 8,
                                                          layer.effective_bits * math.prod(layer.shape))):
            return f"layer {layer.name}: {layer.effective_bits} bits/weight disagrees with {layer.storage_bytes} B"
    out = output.outputs
    if out is None or out.shape != ref.outputs.shape or not bool(torch.isfinite(out).all()):
        return "outputs missing, misshapen or not finite"
    if output.model == "minilm":
        if (out.norm(dim=1) - 1).abs().max() > UNIT_NORM_TOLERANCE:
            return "embeddings are not unit-norm"
        recall = fidelity_eval.recall_at(out, inputs["counts"], inputs["relevant"], RECALL_K)
        if output.recall_at_10 is None or abs(recall - output.recall_at_10) > 1e-12:
            return f"reported recall@10 {output.recall_at_10} != {recall} recomputed from the embeddings"
        return None
    if (torch.logsumexp(out, dim=-1).abs().max()) > 1e-3:
        return "log-probabilities do not normalize"
    nll = fidelity_eval.token_nll(out, inputs["token_ids"])
    if output.nll is None or not torch.allclose(output.nll, nll, rtol=1e-9, atol=1e-9):
        return "reported NLL != -log p of the scored tokens"
    if output.perplexity is None or not math.isclose(output.perplexity, fidelity_eval.perplexity(nll), rel_tol=1e-9):
        return f"reported perplexity {output.perplexity} != exp(mean NLL)"
    return None


def _evaluate_cost(params: dict) -> tuple[float, float, float, list[tuple[int, int]]]:
    """(FLOPs, bytes, float32 weight bytes, linear layer shapes) of one evaluation."""
    if params["model"] == "minilm":
        linear = [(minilm.HIDDEN, minilm.HIDDEN)] * 4 + [(minilm.INTERMEDIATE, minilm.HIDDEN),
                                                         (minilm.HIDDEN, minilm.INTERMEDIATE)]
        linear = linear * minilm.LAYERS
        per_token = 2.0 * sum(math.prod(s) for s in linear)
        lengths = _minilm_lengths(params["sentences"], params["documents"], params["queries"])
        attention = sum(4.0 * n * n * minilm.HIDDEN * minilm.LAYERS for n in lengths)
        weights = 4.0 * (sum(math.prod(s) for s in linear) + minilm.VOCAB * minilm.HIDDEN)
        traffic = 4.0 * sum(math.prod(s) for s in linear) + 4.0 * minilm.HIDDEN * sum(lengths)
        return per_token * sum(lengths) + attention, traffic, weights, linear
    config = tf.load_config(smollm2.CONFIG_NAME)
    precision = tf.Precision(weight_bits=32, kv_bits=32, activation_bytes=4)
    window = tf.prefill_cost(config, precision, params["window_tokens"])
    scored = params["window_tokens"] - 1
    head = 2.0 * scored * config.hidden_size * config.vocab_size + 5.0 * scored * config.vocab_size
    flops = params["windows"] * (window.flops + head)
    traffic = params["windows"] * (window.bytes + 2 * 4.0 * scored * config.vocab_size)
    kv_out = config.num_kv_heads * config.head_dim
    per_layer = [(config.num_heads * config.head_dim, config.hidden_size), (kv_out, config.hidden_size),
                 (kv_out, config.hidden_size), (config.hidden_size, config.num_heads * config.head_dim),
                 (config.intermediate_size, config.hidden_size), (config.intermediate_size, config.hidden_size),
                 (config.hidden_size, config.intermediate_size)]
    return flops, traffic, 4.0 * tf.parameter_count(config)["total"], per_layer * config.num_layers


@functools.lru_cache(maxsize=8)
def _minilm_lengths(sentences: int, documents: int, queries: int) -> list[int]:
    inputs = _minilm_inputs({"sentences": sentences, "documents": documents, "queries": queries,
                             "calibration_tokens": 1}, seed=0)
    return inputs["lengths"].tolist()


@implementation("quant_fidelity", "fp32", devices=("cpu",), baseline=True)
def as_loaded(inputs: dict, params: dict) -> FidelityResult:
    """The model as loaded (float32; SmolLM2 dequantized from Q4_1), no format applied."""
    model = _model(params)
    start = time.perf_counter()
    evaluation = _evaluate(model, inputs, params)
    return FidelityResult(params["model"], "fp32", fake_quant.as_loaded_layers(model), **evaluation,
                          evaluate_s=time.perf_counter() - start)


@implementation("quant_fidelity", "fake_quant", devices=("cpu",))
def fake_quantized(inputs: dict, params: dict) -> FidelityResult:
    """Every linear weight (lm_head excluded) replaced by dequantize(quantize(w)), restored afterwards."""
    model = _model(params)
    start = time.perf_counter()
    calibration = _calibration(model, inputs, params) if fake_quant.needs_calibration(params["format"]) else None
    with fake_quant.fake_quantized(model, params["format"], calibration,
                                   weight_dtype=DTYPES[params["dtype"]]) as quantized:
        quantized_at = time.perf_counter()
        evaluation = _evaluate(model, inputs, params)
        done = time.perf_counter()
    return FidelityResult(params["model"], params["format"], quantized.layers, **evaluation,
                          quantize_s=quantized_at - start, evaluate_s=done - quantized_at)
