"""Adapters on disk: our round trip, both directions with the real `peft`, export, atomic writes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import peft
import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import tiny_bert, tiny_gpt2, tiny_llama
from torch import nn

import nagner.peft.serialization as serialization
from nagner.peft import (
    LoraConfig,
    adapted_layers,
    adapter_names,
    adapter_state_dict,
    attach,
    export_peft_lora,
    load_adapter,
    save_adapter,
    set_active,
)

IDS = torch.randint(0, 100, (3, 7), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def run(model: nn.Module) -> torch.Tensor:
    output = model(input_ids=IDS)
    return output.logits if hasattr(output, "logits") else output.last_hidden_state


@torch.no_grad()
def randomize_lora(model: nn.Module, seed: int) -> None:
    """Non-zero values for every LoRA tensor (ours or `peft`'s)."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)


def adapted(build, config: LoraConfig, name: str = "default", seed: int = 3) -> nn.Module:
    model = build()
    attach(model, config, name)
    randomize_lora(model, seed)
    return model


def peft_load(build, directory: Path) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft notes that Conv1D needs fan_in_fan_out
        return peft.PeftModel.from_pretrained(build(), str(directory)).eval()


def _peft_saved(build, config, directory, seed=5):
    """A `peft` LoRA model with non-zero weights, saved by `peft` into ``directory``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft notes that Conv1D needs fan_in_fan_out
        theirs = peft.get_peft_model(build(), config).eval()
    randomize_lora(theirs, seed=seed)
    theirs.save_pretrained(str(directory))
    return theirs


def our_load(build, directory: Path, **kwargs) -> nn.Module:
    model = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a peft-written config carries keys we do not use
        load_adapter(model, directory, **kwargs)
    return model


QV = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"])
PATTERNS = LoraConfig(
    r=4,
    lora_alpha=8,
    target_modules=["query", "value", "output.dense"],
    rank_pattern={"value": 2, r"1\.output\.dense": 6},
    alpha_pattern={"query": 3},
)


# ---------------------------------------------------------------------------------- ours ↔ ours


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    model = adapted(tiny_bert, PATTERNS)
    save_adapter(model, tmp_path, base_model_name_or_path="tiny-bert")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["base_model_name_or_path"] == "tiny-bert"
    assert "nagner_method" not in saved  # a LoRA folder is a plain peft folder
    stored = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert stored.keys() == adapter_state_dict(model).keys()
    assert all(k.startswith("base_model.model.encoder.layer.") and ".lora_" in k for k in stored)
    assert len(stored) == 2 * 4 * 2  # 2 layers × (q, v, attention.output.dense, output.dense) × (A, B)

    loaded = tiny_bert()
    load_adapter(loaded, tmp_path, "restored")
    assert adapter_names(loaded) == ["restored"]
    assert torch.equal(run(loaded), run(model))
    assert not any(p.requires_grad for p in loaded.parameters())


def test_load_as_trainable_leaves_only_the_adapter_trainable(tmp_path):
    save_adapter(adapted(tiny_bert, QV), tmp_path)
    model = tiny_bert()
    load_adapter(model, tmp_path, trainable=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 8 and all(".adapters.default.lora_" in n for n in trainable)


def test_unknown_config_keys_are_ignored_with_a_warning(tmp_path):
    model = adapted(tiny_bert, QV)
    save_adapter(model, tmp_path)
    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "option_from_2030": [1, 2]}))
    loaded = tiny_bert()
    with pytest.warns(UserWarning, match="ignoring keys .*option_from_2030"):
        load_adapter(loaded, tmp_path)
    assert torch.equal(run(loaded), run(model))


@pytest.mark.parametrize("fault", ["missing", "unexpected", "shape"])
def test_tensors_that_do_not_fit_raise_and_leave_the_model_unchanged(tmp_path, fault):
    save_adapter(adapted(tiny_bert, QV), tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    key = "base_model.model.encoder.layer.1.attention.self.value.lora_B.weight"
    if fault == "missing":
        del tensors[key]
    elif fault == "unexpected":
        tensors["base_model.model.encoder.layer.1.attention.self.key.lora_A.weight"] = torch.zeros(4, 64)
    else:
        tensors[key] = torch.zeros(64, 5)
    save_file(tensors, str(weights))

    model = tiny_bert()
    attach(model, QV, "kept")  # an adapter already there, active and trainable, must stay so
    randomize_lora(model, seed=9)
    modules = dict(model.named_modules())
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    before = run(model)
    with pytest.raises(
        ValueError, match={"missing": "1 missing", "unexpected": "1 unexpected", "shape": "shape"}[fault]
    ):
        load_adapter(model, tmp_path, "broken")
    assert adapter_names(model) == ["kept"]
    assert dict(model.named_modules()) == modules
    assert {n: p.requires_grad for n, p in model.named_parameters()} == trainable
    assert torch.equal(run(model), before)


def test_a_failed_load_into_a_bare_model_leaves_it_bare(tmp_path):
    save_adapter(adapted(tiny_bert, QV), tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    save_file({"base_model.model.nothing.lora_A.weight": torch.zeros(1)}, str(weights))
    model = tiny_bert()
    modules = dict(model.named_modules())
    with pytest.raises(ValueError, match="missing"):
        load_adapter(model, tmp_path)
    assert dict(model.named_modules()) == modules
    assert all(p.requires_grad for p in model.parameters())
    assert not hasattr(model, "nagner_peft")


# ---------------------------------------------------------------------------------- ours ↔ peft


@pytest.mark.parametrize(
    ("build", "config"),
    [
        (tiny_bert, PATTERNS),
        (tiny_bert, LoraConfig(r=4, lora_alpha=6, use_rslora=True, target_modules=r".*\.(key|dense)")),
        (tiny_gpt2, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"])),
        (tiny_llama, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")),
        (
            tiny_llama,
            LoraConfig(
                r=2, target_modules=["q_proj", "up_proj"], layers_to_transform=[1], layers_pattern="layers"
            ),
        ),
    ],
    ids=["bert-patterns", "bert-rslora-regex", "gpt2-conv1d", "llama-all-linear", "llama-layer1"],
)
def test_our_lora_folder_loads_in_peft_with_identical_outputs(tmp_path, build, config):
    model = adapted(build, config)
    save_adapter(model, tmp_path)
    theirs = peft_load(build, tmp_path)
    assert sum(".lora_A." in n for n, _ in theirs.named_parameters()) == len(adapted_layers(model))
    torch.testing.assert_close(run(theirs), run(model), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("build", "config"),
    [
        (
            tiny_bert,
            peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], rank_pattern={"value": 2}),
        ),
        (tiny_gpt2, peft.LoraConfig(r=4, lora_alpha=16, target_modules=["c_attn"], fan_in_fan_out=True)),
        (
            tiny_llama,
            peft.LoraConfig(r=2, lora_alpha=4, use_rslora=True, target_modules=["q_proj", "down_proj"]),
        ),
    ],
    ids=["bert", "gpt2", "llama-rslora"],
)
def test_a_peft_saved_lora_loads_with_ours_with_identical_outputs(tmp_path, build, config):
    theirs = _peft_saved(build, config, tmp_path, seed=4)
    ours = our_load(build, tmp_path)
    torch.testing.assert_close(run(ours), run(theirs), rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------------- export


def test_export_pads_per_module_ranks_and_loads_in_peft(tmp_path):
    model = adapted(tiny_bert, PATTERNS)
    export_peft_lora(model, tmp_path, base_model_name_or_path="tiny-bert")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["r"] == 6 and config["lora_alpha"] == 6 and config["use_rslora"] is False
    # "dense" would also pick intermediate.dense and pooler.dense: a regex of the exact names instead
    assert isinstance(config["target_modules"], str) and "pooler" not in config["target_modules"]
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert {t.shape[0] for k, t in tensors.items() if k.endswith("lora_A.weight")} == {6}
    value_B = tensors["base_model.model.encoder.layer.0.attention.self.value.lora_B.weight"]
    assert torch.equal(value_B[:, 2:], torch.zeros(64, 4))  # rank 2 padded to 6
    theirs = peft_load(tiny_bert, tmp_path)
    torch.testing.assert_close(run(theirs), run(model), rtol=1e-5, atol=1e-5)
    assert torch.equal(run(our_load(tiny_bert, tmp_path)), run(theirs))


def test_export_names_targets_by_short_names_when_exact_and_by_regex_otherwise(tmp_path):
    exact = adapted(tiny_bert, QV)
    export_peft_lora(exact, tmp_path / "exact")
    assert json.loads((tmp_path / "exact" / "adapter_config.json").read_text())["target_modules"] == [
        "query",
        "value",
    ]

    partial = adapted(tiny_bert, LoraConfig(r=4, target_modules=["query", "value"], layers_to_transform=[0]))
    export_peft_lora(partial, tmp_path / "partial")
    target = json.loads((tmp_path / "partial" / "adapter_config.json").read_text())["target_modules"]
    assert isinstance(target, str)
    theirs = peft_load(tiny_bert, tmp_path / "partial")
    assert {n.rsplit(".lora_A", 1)[0] for n, _ in theirs.named_parameters() if ".lora_A." in n} == {
        "base_model.model.encoder.layer.0.attention.self.query",
        "base_model.model.encoder.layer.0.attention.self.value",
    }
    torch.testing.assert_close(run(theirs), run(partial), rtol=1e-5, atol=1e-5)


def test_export_of_gpt2_sets_fan_in_fan_out(tmp_path):
    model = adapted(
        tiny_gpt2, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"], rank_pattern={"c_fc": 2})
    )
    export_peft_lora(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["fan_in_fan_out"] is True and config["target_modules"] == ["c_attn", "c_fc"]
    theirs = peft_load(tiny_gpt2, tmp_path)
    torch.testing.assert_close(run(theirs), run(model), rtol=1e-5, atol=1e-5)


def test_export_only_the_named_adapter(tmp_path):
    model = adapted(tiny_bert, QV, "a")
    attach(model, LoraConfig(r=2, target_modules=["key"]), "b")
    randomize_lora(model, seed=5)
    set_active(model, "a")
    export_peft_lora(model, tmp_path, name="a")
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert not any(".key." in k for k in tensors)
    torch.testing.assert_close(run(peft_load(tiny_bert, tmp_path)), run(model), rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------- atomic writes


def test_writes_leave_no_temporary_files_and_a_failed_write_keeps_the_old_folder(tmp_path, monkeypatch):
    model = adapted(tiny_bert, QV)
    save_adapter(model, tmp_path)
    export_peft_lora(model, tmp_path / "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "export",
    ]
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    old = (tmp_path / "adapter_model.safetensors").read_bytes()

    def crash(tensors, path, metadata=None):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(serialization, "save_file", crash)
    randomize_lora(model, seed=11)
    with pytest.raises(OSError, match="disk full"):
        save_adapter(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "export",
    ]
    assert (tmp_path / "adapter_model.safetensors").read_bytes() == old


def test_peft_options_that_change_the_computation_are_refused():
    from nagner.peft import LoraConfig

    with pytest.raises(ValueError, match=r"use_dora=True is not supported"):
        LoraConfig.from_dict({"r": 4, "target_modules": ["query"], "use_dora": True})
    with pytest.raises(ValueError, match=r"modules_to_save=\['classifier'\]"):
        LoraConfig.from_dict({"r": 4, "target_modules": ["query"], "modules_to_save": ["classifier"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # switched off it is harmless: no error, no warning
        assert LoraConfig.from_dict({"r": 4, "target_modules": ["query"], "use_dora": False}).r == 4


def test_attach_refuses_a_bare_container():
    import torch

    from nagner.peft import LoraConfig, attach

    with pytest.raises(TypeError, match="not to the container itself"):
        attach(torch.nn.Sequential(torch.nn.Linear(4, 4)), LoraConfig(r=2, target_modules=["0"]))


# ------------------------------------------------------- real peft folders (review B3)
@pytest.mark.parametrize(
    "config",
    [
        peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
        peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], layers_to_transform=1, layers_pattern="layers"),
        peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], layers_to_transform=[0], layers_pattern=["layers"]),
    ],
    ids=["init_lora_weights=false", "layers_to_transform=int", "layers_pattern=list"],
)
def test_peft_folders_with_valid_options_load_with_identical_outputs(tmp_path, config):
    theirs = _peft_saved(tiny_llama, config, tmp_path)
    ours = tiny_llama()
    load_adapter(ours, tmp_path)
    torch.testing.assert_close(run(ours), run(theirs), rtol=1e-5, atol=1e-5)
    adapted_names = sorted(adapted_layers(ours))
    expected = sorted(n for n, m in theirs.base_model.model.named_modules() if hasattr(m, "lora_A"))
    assert adapted_names == expected and adapted_names  # the same modules, not more, not none


def test_a_peft_folder_with_default_options_loads_without_warnings(tmp_path):
    _peft_saved(tiny_llama, peft.LoraConfig(r=2, target_modules=["q_proj"]), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails: peft's 30-odd default keys are not news
        load_adapter(tiny_llama(), tmp_path)


@pytest.mark.parametrize("key, value", [
    ("alora_invocation_tokens", [5, 6]),
    ("arrow_config", {"top_k": 2}),
    ("layer_replication", [[0, 2], [1, 2]]),
    ("use_bdlora", {"block_size": 4}),
    ("target_parameters", ["mlp.experts.down_proj"]),
    ("kasa_config", {"k": 1}),
])
def test_peft_options_that_change_the_computation_are_refused_by_name(key, value):
    from nagner.peft import LoraConfig

    with pytest.raises(ValueError, match=f"{key}=.* is not supported"):
        LoraConfig.from_dict({"r": 4, "target_modules": ["query"], key: value})
