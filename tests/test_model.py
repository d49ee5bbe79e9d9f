"""End-to-end with the real packaged model over the seed articles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings
from service.embedding import OnnxEmbedder, TorchEmbedder, model_info, onnx_path_for
from service.engine import Engine

pytestmark = pytest.mark.model
MYANMAR = "who visited Myanmar?"
SEED_003 = "seeds/003_517cb5bd72187ee7.txt"


def cli(*args: str, env: dict[str, str] | None = None, module: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "service", *args] if module else [sys.executable, "-m", "service.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def test_ask_names_liu_zhongyi_with_citation(seed_engine: Engine) -> None:
    answer = seed_engine.ask(MYANMAR)
    assert answer.answer is not None and "Liu Zhongyi" in answer.answer
    first = answer.citations[0]
    assert first.source == SEED_003 and isinstance(first.paragraph, int)
    assert first.quote in first.text and answer.answer == first.quote
    text = (seed_engine.index_dir.parent / first.source).read_text(encoding="utf-8")
    assert text[first.char_start : first.char_end] == first.text
    assert text[first.quote_start : first.quote_end] == first.quote


def test_search_results_cite_exact_offsets(seed_engine: Engine) -> None:
    for p in seed_engine.search("scam centres repatriation", 5):
        text = (seed_engine.index_dir.parent / p.source).read_text(encoding="utf-8")
        assert text[p.char_start : p.char_end] == p.text
        assert p.paragraph >= 1 and -1.0 <= p.dense <= 1.0


def test_onnx_and_torch_paths_agree(seed_settings: Settings) -> None:
    info = model_info(seed_settings.model)
    onnx = OnnxEmbedder(info, onnx_path_for(seed_settings.index, info))
    torch_fp32 = TorchEmbedder(info, bf16="off")
    texts = ["who visited Myanmar?", "x", "Ünïcödé 你好 — dash", "word " * 400,
             "China and Belarus will further strengthen law enforcement cooperation. " * 8]
    a, b = onnx.embed(texts), torch_fp32.embed(texts)
    cos = (a * b).sum(axis=1)
    assert cos.min() >= 0.9999, cos
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_onnx_batches_by_length_and_keeps_the_input_order(seed_settings: Settings) -> None:
    """Texts of very different lengths go through several runs; each row is still its own text."""
    info = model_info(seed_settings.model)
    onnx = OnnxEmbedder(info, onnx_path_for(seed_settings.index, info))
    texts = ["short", "word " * 200, "a middling sentence about police cooperation", "x", "word " * 60] * 3
    together = onnx.embed(texts)
    alone = np.concatenate([onnx.embed([t]) for t in texts])
    assert (together * alone).sum(axis=1).min() >= 0.99999


def test_onnx_search_in_one_run_matches_embedding_then_exact_search(seed_settings: Settings) -> None:
    """The exported graph embeds and searches in one run; it gives the vectors ``embed`` gives and
    the rows and scores ``ExactIndex.search`` finds for them."""
    from service import store
    from service.retrieval import DenseQueries
    from service.vectors import ExactIndex

    info = model_info(seed_settings.model)
    onnx = OnnxEmbedder(info, onnx_path_for(seed_settings.index, info))
    matrix = store.open_snapshot(seed_settings.index, info.sha256).matrix
    queries = ["who visited Myanmar?", "police cooperation training", "x", "word " * 300]
    vectors, ids, scores = onnx.search(queries, matrix, 7)
    np.testing.assert_allclose(vectors, onnx.embed(queries), atol=1e-6)
    exact_ids, exact_scores = ExactIndex(matrix).search(onnx.embed(queries), 7)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    np.testing.assert_allclose(scores, np.take_along_axis(vectors @ matrix.T, ids, axis=1), atol=1e-5)
    assert (ids[:, 0] == exact_ids[:, 0]).all() and ids.shape == (4, 7)
    assert onnx.search(queries[:1], matrix, len(matrix) + 5)[1].shape == (1, len(matrix))  # capped
    assert onnx.search(queries[:1], matrix, 0)[1].shape == (1, 0)
    # the engine's batched dense step takes the one-run path for an exact index
    vector, (top, _scores) = DenseQueries(onnx)(queries[0], ExactIndex(matrix), 7)
    assert top.tolist() == ids[0].tolist() and np.allclose(vector, vectors[0], atol=1e-6)


def test_cli_json_contract(seed_settings: Settings) -> None:
    out = cli("--json", "--index", str(seed_settings.index), MYANMAR)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) >= {"question", "answer", "citations"}
    assert "Liu Zhongyi" in result["answer"]
    c = result["citations"][0]
    assert c["source"] == SEED_003 and isinstance(c["paragraph"], int)
    assert {"text", "score", "char_start", "char_end"} <= set(c)


def test_cli_text_output_numbers_citations(seed_settings: Settings) -> None:
    out = cli("--index", str(seed_settings.index), "--k", "3", MYANMAR)
    assert out.returncode == 0, out.stderr
    assert "Liu Zhongyi" in out.stdout
    assert f"[1] {SEED_003} ¶" in out.stdout and "[3] " in out.stdout and "[4] " not in out.stdout


def test_cli_missing_explicit_index_is_an_error(tmp_path: Path) -> None:
    out = cli("--index", str(tmp_path / "nope"), MYANMAR)
    assert out.returncode == 1
    assert "python -m service index" in out.stderr and "Traceback" not in out.stderr


def test_cli_builds_missing_default_index_first(tmp_path: Path, seed_settings: Settings) -> None:
    env = {"ASK_INDEX": str(tmp_path / "index"), "ASK_CORPUS": str(seed_settings.corpus)}
    out = cli("--json", MYANMAR, env=env)
    assert out.returncode == 0, out.stderr
    assert "building it" in out.stderr
    assert "Liu Zhongyi" in json.loads(out.stdout)["answer"]


def test_cli_rejects_empty_question(seed_settings: Settings) -> None:
    out = cli("--index", str(seed_settings.index), "   ")
    assert out.returncode == 1 and "empty" in out.stderr and "Traceback" not in out.stderr


def test_admin_index_refresh_uses_remembered_corpus(seed_settings: Settings) -> None:
    out = cli("index", "--index", str(seed_settings.index), "--json", module=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["snapshot"] is None and report["unchanged"] == 5 and report["chunks_embedded"] == 0
    assert report["corpus"] == str(seed_settings.corpus.resolve())


def test_off_topic_question_abstains(seed_engine: Engine) -> None:
    answer = seed_engine.ask("Who won the football world cup in 2018?")
    assert answer.answer is None and answer.reason
