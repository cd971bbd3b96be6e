"""One named linear layer of a real model: its weight and its real inputs on the reference text.

WHY: a format's error on a synthetic matrix says little until it is set beside the same format on weights a
model was trained into, and a layer's output error needs the inputs that layer really sees. Inputs are captured
by a forward hook on the unquantized model; the forward stops as soon as the layer has its rows.

Sources: `minilm` (all-MiniLM-L6-v2, float32 as shipped) and `smollm2` (SmolLM2-135M-Instruct, whose only
published local weights here are Q4_1: its "real" weights are the dequantized Q4_1 values).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

import torch

from reference_impls.models import fake_quant, text_corpus

SOURCES = ("minilm", "smollm2")
MINILM_SENTENCES_PER_BATCH = 16
# Layer name patterns and their [out_features, in_features], so shapes are known without loading a model.
_MINILM = {r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)": (384, 384),
           r"encoder\.layer\.(\d+)\.attention\.output\.dense": (384, 384),
           r"encoder\.layer\.(\d+)\.intermediate\.dense": (1536, 384),
           r"encoder\.layer\.(\d+)\.output\.dense": (384, 1536)}
_SMOLLM2 = {r"model\.layers\.(\d+)\.self_attn\.(q_proj|o_proj)": (576, 576),
            r"model\.layers\.(\d+)\.self_attn\.(k_proj|v_proj)": (192, 576),
            r"model\.layers\.(\d+)\.mlp\.(gate_proj|up_proj)": (1536, 576),
            r"model\.layers\.(\d+)\.mlp\.down_proj": (576, 1536)}
_LAYOUT = {"minilm": (_MINILM, 6), "smollm2": (_SMOLLM2, 30)}
EXAMPLES = {"minilm": ("encoder.layer.0.attention.self.query", "encoder.layer.0.intermediate.dense",
                       "encoder.layer.5.output.dense"),
            "smollm2": ("model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj",
                        "model.layers.29.mlp.gate_proj")}


def layer_shape(source: str, layer: str) -> tuple[int, int]:
    """[out_features, in_features] of a named linear layer, or a ValueError naming the allowed patterns."""
    if source not in _LAYOUT:
        raise ValueError(f"unknown source {source!r}; allowed: {', '.join(SOURCES)}")
    patterns, layers = _LAYOUT[source]
    for pattern, shape in patterns.items():
        match = re.fullmatch(pattern, layer)
        if match and int(match.group(1)) < layers:
            return shape
    raise ValueError(f"{layer!r} is not a linear layer of {source} (layers 0-{layers - 1}); e.g. "
                     f"{', '.join(EXAMPLES[source])}")


def missing_reason(source: str) -> str | None:
    return _loader(source).missing_reason()


def _loader(source: str) -> Any:
    from reference_impls.models import minilm, smollm2

    return {"minilm": minilm, "smollm2": smollm2}[source]


def _model(source: str) -> Any:
    loader = _loader(source)
    return loader.load_minilm().model if source == "minilm" else loader.load_smollm2().model


def layer_weight(source: str, layer: str) -> torch.Tensor:
    """A float32 copy of the layer's weight [out_features, in_features]."""
    layer_shape(source, layer)
    module = dict(_model(source).named_modules())[layer]
    return module.weight.detach().float().clone()


def layer_inputs(source: str, layer: str, part: str, rows: int, seed: int) -> torch.Tensor:
    """The layer's input rows [rows, in_features] on the reference text's `part` (evaluation / calibration).

    minilm: sentences drawn by the seed, fed 16 at a time until `rows` real tokens (padding dropped) arrived.
    smollm2: one window of `rows` tokens, the seed-th such window of the text (wrapping around).
    """
    layer_shape(source, layer)
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    model = _model(source)
    captured = fake_quant.capture_linear_inputs(model, [layer], _text_batches(source, part, rows, seed), rows)[layer]
    if captured.shape[0] < rows:
        raise ValueError(f"the {part} text gave only {captured.shape[0]} rows for {layer}, fewer than {rows}")
    return captured


def _text_batches(source: str, part: str, rows: int, seed: int) -> Iterator[dict[str, Any]]:
    if source == "minilm":
        from reference_impls.models import minilm

        encoder = minilm.load_minilm()
        pool = text_corpus.reference_sentences(part)
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed)).tolist()
        ids = minilm.token_ids(encoder, [pool[i] for i in order])
        yield from minilm.batches(ids, MINILM_SENTENCES_PER_BATCH)
    else:
        yield {"input_ids": smollm2_window(part, rows, seed).unsqueeze(0)}


def smollm2_tokens(part: str) -> torch.Tensor:
    """The reference text's `part` as SmolLM2 token ids [n] (no special tokens)."""
    return torch.tensor(_smollm2_ids(part), dtype=torch.long)


@functools.lru_cache(maxsize=2)
def _smollm2_ids(part: str) -> tuple[int, ...]:
    from reference_impls.models import smollm2

    tokenizer = smollm2.load_smollm2().tokenizer
    return tuple(tokenizer(text_corpus.reference_text(part).text, add_special_tokens=False)["input_ids"])


def smollm2_window(part: str, length: int, index: int) -> torch.Tensor:
    """Window `index` [length] of consecutive tokens: tokens [index*length, (index+1)*length), wrapping around
    the number of whole windows the text holds."""
    tokens = smollm2_tokens(part)
    available = tokens.numel() // length
    if available < 1:
        raise ValueError(f"the {part} text has {tokens.numel()} SmolLM2 tokens, fewer than one window of {length}")
    start = (index % available) * length
    return tokens[start:start + length]
