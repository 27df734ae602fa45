"""Which modules a config adapts: `peft`'s name forms, plus errors where `peft` stays silent."""

from __future__ import annotations

import pytest
from tiny_models import tiny_bert, tiny_gpt2, tiny_llama

from nagner.peft import LoraConfig, TargetError, attach, find_targets


def targets(model, **fields) -> list[str]:
    return find_targets(model, LoraConfig(**fields))


BERT_QV = [
    "encoder.layer.0.attention.self.query",
    "encoder.layer.0.attention.self.value",
    "encoder.layer.1.attention.self.query",
    "encoder.layer.1.attention.self.value",
]


def test_list_entries_match_exact_names_and_dotted_suffixes():
    model = tiny_bert()
    assert targets(model, target_modules=["query", "value"]) == BERT_QV
    assert targets(model, target_modules=["self.query", "attention.self.value"]) == BERT_QV
    assert targets(model, target_modules=["encoder.layer.1.attention.self.query"]) == [BERT_QV[2]]
    # a suffix is a whole dotted part: "1.attention.self.query" names layer 1 only
    assert targets(model, target_modules=["1.attention.self.query"]) == [BERT_QV[2]]
    # "output.dense" is a suffix of both attention.output.dense and output.dense, not of intermediate.dense
    assert targets(model, target_modules=["output.dense"]) == [
        "encoder.layer.0.attention.output.dense",
        "encoder.layer.0.output.dense",
        "encoder.layer.1.attention.output.dense",
        "encoder.layer.1.output.dense",
    ]


def test_a_string_is_a_regex_that_must_match_the_whole_name():
    model = tiny_bert()
    assert targets(model, target_modules=r".*\.(query|value)") == BERT_QV
    assert targets(model, target_modules=r"encoder\.layer\.0\..*\.(query|value)") == BERT_QV[:2]
    with pytest.raises(TargetError, match="matches no module"):
        targets(model, target_modules="query")  # re.search would match; fullmatch does not


def test_all_linear_skips_the_output_layer():
    gpt2 = targets(tiny_gpt2(), target_modules="all-linear")
    assert gpt2 == [
        f"transformer.h.{i}.{m}"
        for i in range(2)
        for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    ]
    llama = targets(tiny_llama(), target_modules="all-linear")
    projections = (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    )
    assert llama == [f"model.layers.{i}.{m}" for i in range(2) for m in projections]
    assert "lm_head" not in llama
    # a bare encoder has no output layer: all 6 linears per layer plus the pooler
    assert len(targets(tiny_bert(), target_modules="all-linear")) == 2 * 6 + 1


def test_exclude_modules_by_suffix_and_by_regex():
    model = tiny_bert()
    kept = targets(model, target_modules=["query", "value"], exclude_modules=["1.attention.self.value"])
    assert kept == BERT_QV[:3]
    kept = targets(model, target_modules="all-linear", exclude_modules=r".*(dense|key)")
    assert kept == BERT_QV


def test_layers_to_transform_with_and_without_layers_pattern():
    model = tiny_bert()
    assert targets(model, target_modules=["query", "value"], layers_to_transform=[1]) == BERT_QV[2:]
    assert (
        targets(model, target_modules=["query", "value"], layers_to_transform=[0], layers_pattern="layer")
        == BERT_QV[:2]
    )
    llama = targets(tiny_llama(), target_modules=["q_proj"], layers_to_transform=[1], layers_pattern="layers")
    assert llama == ["model.layers.1.self_attn.q_proj"]
    gpt2 = targets(tiny_gpt2(), target_modules=["c_attn"], layers_to_transform=[0], layers_pattern="h")
    assert gpt2 == ["transformer.h.0.attn.c_attn"]


def test_a_misspelled_entry_next_to_a_correct_one_raises_with_near_misses():
    model = tiny_bert()
    with pytest.raises(TargetError) as error:
        targets(model, target_modules=["query", "vaule"])  # peft adapts "query" and ignores "vaule"
    message = str(error.value)
    assert "'vaule'" in message and "did you mean" in message and "'value'" in message
    with pytest.raises(TargetError, match="exclude_modules entry 'qeury'.*'query'"):
        targets(model, target_modules=["query"], exclude_modules=["qeury"])
    with pytest.raises(TargetError, match="'q_projj'.*'q_proj'"):
        targets(tiny_llama(), target_modules=["q_projj", "v_proj"])


def test_a_regex_matching_nothing_raises():
    with pytest.raises(TargetError, match="matches no module"):
        targets(tiny_bert(), target_modules=r".*\.querry")


def test_non_linear_targets_raise():
    with pytest.raises(TargetError, match="not linear layers: encoder.layer.0.attention.output.LayerNorm"):
        targets(tiny_bert(), target_modules=["attention.output.LayerNorm"])
    with pytest.raises(TargetError, match="Embedding"):
        targets(tiny_llama(), target_modules=["embed_tokens"])


def test_an_empty_result_raises():
    model = tiny_bert()
    with pytest.raises(TargetError, match="no module left"):
        targets(model, target_modules=["query"], layers_to_transform=[7])
    with pytest.raises(TargetError, match="no module left"):
        targets(model, target_modules=["query"], exclude_modules=["query"])
    with pytest.raises(TargetError, match="empty"):
        targets(model, target_modules=[])
    with pytest.raises(TargetError, match="empty"):
        targets(model, target_modules=None)


def test_a_failed_attach_leaves_the_model_untouched():
    model = tiny_bert()
    before = dict(model.named_modules())
    with pytest.raises(TargetError):
        attach(model, LoraConfig(target_modules=["query", "vaule"]))
    assert dict(model.named_modules()) == before
    assert not hasattr(model, "nagner_peft")


def test_adapted_layers_are_found_again_by_their_host_names():
    model = tiny_bert()
    attach(model, LoraConfig(target_modules=["query", "value"]), "a")
    # the second adapter targets the same names: the AdaptedLayer counts as the module, not its insides
    assert targets(model, target_modules=["query", "value"]) == BERT_QV
    assert targets(model, target_modules="all-linear") == targets(tiny_bert(), target_modules="all-linear")
