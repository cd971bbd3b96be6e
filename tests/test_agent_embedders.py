"""Embedders: unit rows of the right shape, the hashing embedder identical across processes, MiniLM when
installed equal to the models/minilm.py pipeline."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from reference_impls.agents.embedders import Embedder, HashingEmbedder, MiniLMEmbedder, make_embedder

TEXTS = ["I adopted a golden retriever puppy", "We went to Lisbon for the jazz festival",
         "golden retriever puppy adopted", "", "the and of"]


@pytest.mark.parametrize("dim", [256, 384])
def test_hashing_rows_are_unit_length_and_shaped(dim):
    vectors = HashingEmbedder(dim=dim).embed(TEXTS)
    assert vectors.shape == (5, dim) and vectors.dtype == np.float32
    norms = np.linalg.norm(vectors, axis=1)
    np.testing.assert_allclose(norms[:3], 1.0, rtol=1e-6)
    assert norms[3] == 0.0 and norms[4] == 0.0  # no content words: no features, a zero row


def test_hashing_similarity_follows_shared_words():
    v = HashingEmbedder().embed(TEXTS[:3])
    assert v[0] @ v[2] > 0.5 > abs(v[0] @ v[1])
    np.testing.assert_allclose(HashingEmbedder().embed_one(TEXTS[0]), v[0])


def test_hashing_features_are_unigrams_and_bigrams_without_stopwords():
    features = HashingEmbedder().features("I adopted a golden puppy, a golden one")
    assert features["u:golden"] == 2 and features["b:adopted golden"] == 1 and "u:a" not in features
    assert "b:golden puppy" in features
    assert "b:golden puppy" not in HashingEmbedder(bigrams=False).features("golden puppy")


def test_hashing_is_identical_in_another_process_with_another_hash_seed():
    here = HashingEmbedder().embed(TEXTS[:2])
    code = ("import numpy as np, sys; from reference_impls.agents.embedders import HashingEmbedder; "
            f"sys.stdout.buffer.write(HashingEmbedder().embed({TEXTS[:2]!r}).tobytes())")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": ""}, cwd=str(_repo_root())).stdout
    assert np.array_equal(np.frombuffer(there, dtype=np.float32).reshape(here.shape), here)


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parents[1]


def test_bad_embedder_input_is_a_value_error():
    with pytest.raises(ValueError, match="dim must be one of"):
        HashingEmbedder(dim=100)
    with pytest.raises(ValueError, match="allowed: hashing, minilm"):
        make_embedder("glove")
    with pytest.raises(ValueError, match="sequence of texts"):
        HashingEmbedder().embed("one string")
    assert isinstance(make_embedder(None), HashingEmbedder)
    custom = HashingEmbedder(dim=256)
    assert make_embedder(custom) is custom and isinstance(custom, Embedder)


def test_minilm_embedder_matches_the_model_pipeline():
    from reference_impls.models import minilm

    reason = minilm.missing_reason()
    if reason:
        pytest.skip(reason)
    embedder = MiniLMEmbedder()
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32 and embedder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, rtol=1e-5)
    assert not vectors[3].any()  # empty text -> zero row, as the interface says
    reference = minilm.encode(minilm.load_minilm(), TEXTS[:3]).numpy()
    np.testing.assert_allclose(vectors[:3], reference, atol=1e-5)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]
