"""Export to a HF T5 folder: HF's PyTorch T5 gives our logits, load_pretrained reads the folder
back bit for bit, a LoRA answer model is exported merged, and bad input stops in one line."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import jit_apply
from test_t5_parity import hf_and_ours

from ares_jax.export import finished_phases, main, restore_models
from ares_jax.models import MultimodalT5, T5Config, VisionConfig, init_params, load_pretrained, save_pretrained

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXT = dict(
    vocab_size=53, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_decoder_layers=1, num_heads=4, dropout_rate=0.0
)
MODELS = {
    "relu-tied": T5Config(**TEXT),
    "gated-gelu-own-head-unscaled": T5Config(
        **TEXT, feed_forward_proj="gated-gelu", tie_word_embeddings=False, scale_decoder_outputs=False
    ),
    "features-image-memory": T5Config(
        **TEXT, vision=VisionConfig(kind="features", feature_dim=7, decoder_attends_image=True)
    ),
    "pixels": T5Config(
        **TEXT,
        vision=VisionConfig(kind="pixels", feature_dim=8, image_size=16, patch_size=8, vit_layers=1, vit_heads=2),
    ),
}


def perturbed(params, seed):
    """Random params with layer norms and biases moved off their initial 1 and 0."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [leaf + 0.3 * jax.random.normal(key, leaf.shape) for leaf, key in zip(leaves, keys)]
    )


def text_batch(vocab, seed=1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, vocab, size=(2, 11))
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    decoder_ids = rng.integers(2, vocab, size=(2, 9))
    return ids * mask, mask, decoder_ids


@pytest.mark.parametrize("name", list(MODELS))
def test_save_then_load_pretrained_is_bit_identical(tmp_path, name):
    model = MultimodalT5(MODELS[name])
    params = perturbed(init_params(model, jax.random.key(0)), 1)
    save_pretrained(tmp_path, model.config, params)
    loaded_model, loaded = load_pretrained(tmp_path)
    assert loaded_model.config == model.config
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(params)
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", ["relu-tied", "gated-gelu-own-head-unscaled", "features-image-memory"])
def test_hf_pytorch_t5_loads_the_text_part_and_gives_our_logits(tmp_path, name):
    model = MultimodalT5(MODELS[name])
    params = perturbed(init_params(model, jax.random.key(0)), 2)
    save_pretrained(tmp_path, model.config, params)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    ids, mask, decoder_ids = text_batch(model.config.vocab_size)
    expected, ours = hf_and_ours(hf, model, params, ids, mask, decoder_ids, np.ones_like(decoder_ids))
    assert np.abs(np.asarray(ours) - expected).max() < 1e-3
    assert np.abs(expected).max() > 1.0


def test_the_lora_answer_model_is_exported_merged_with_the_adapters_outputs(lora_run, tmp_path, capsys):
    out = tmp_path / "answer"
    assert main([f"workdir={lora_run}", f"out={out}", "model=answer", "phase=baseline"]) == 0
    assert f"exported the answer model after phase eval_baseline of {lora_run} to {out}" in capsys.readouterr().out
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    exported_model, exported = load_pretrained(out)
    assert exported_model.config.lora_rank == 0
    config, phases = finished_phases(lora_run)
    adapter_model, adapted = restore_models(lora_run, config, phases["eval_baseline"], ["answer"])["answer"]
    assert adapter_model.config.lora_rank > 0
    assert any(np.abs(np.asarray(leaf)).max() > 0 for leaf in jax.tree_util.tree_leaves(adapted) if leaf.ndim == 2)
    rng = np.random.default_rng(0)
    ids, mask, decoder_ids = text_batch(adapter_model.config.vocab_size)
    image = jnp.asarray(rng.normal(size=(2, 9, adapter_model.config.vision.feature_dim)), jnp.float32)
    inputs = dict(
        input_ids=jnp.asarray(ids), attention_mask=jnp.asarray(mask), decoder_input_ids=jnp.asarray(decoder_ids)
    )
    with_adapters = np.asarray(jit_apply(adapter_model)({"params": adapted}, image=image, **inputs))
    merged = np.asarray(jit_apply(exported_model)({"params": exported}, image=image, **inputs))
    np.testing.assert_allclose(merged, with_adapters, atol=1e-4)
    assert (merged.argmax(-1) == with_adapters.argmax(-1)).all()  # the same answers


def test_the_default_is_the_policy_after_the_last_finished_phase(lora_run, tmp_path, capsys):
    out = tmp_path / "policy"
    assert main([f"workdir={lora_run}", f"out={out}"]) == 0
    assert "exported the policy model after phase eval_baseline" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == "t5" and saved["ares_jax"]["vision"]["kind"] == "features"
    transformers.T5ForConditionalGeneration.from_pretrained(out)  # HF reads the run's model too


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["phase=rl_1"], "phase=rl_1: not a finished phase whose checkpoint is kept; these are: "),
        (["model=value"], "model=value: must be policy or answer"),
        (["colour=red"], "unknown option 'colour=red'; options: workdir=, out=, model=, phase=, overwrite="),
    ],
)
def test_bad_options_stop_in_one_line(lora_run, tmp_path, capsys, arguments, message):
    assert main([f"workdir={lora_run}", f"out={tmp_path / 'x'}", *arguments]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ares_jax.export: ") and message in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_a_folder_with_files_is_kept_unless_overwrite(lora_run, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main([f"workdir={lora_run}", f"out={out}"]) == 2
    assert f"out={out} exists and is not empty; choose another folder or add overwrite=true" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"
    assert main([f"workdir={lora_run}", f"out={out}", "overwrite=true"]) == 0
    assert not (out / "notes.txt").exists() and (out / "model.safetensors").exists()


def test_a_workdir_without_a_finished_phase_is_refused(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main([f"workdir={tmp_path / 'run'}", f"out={tmp_path / 'out'}"]) == 2
    assert f"{tmp_path / 'run'} holds no checkpoints (not a run's work directory?)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_run_killed_before_its_first_phase_ended_has_nothing_to_export(tmp_path, capsys):
    from ares_jax.checkpoint import Checkpointer
    from ares_jax.config import Config, to_dict

    workdir = tmp_path / "run"
    checkpoints = Checkpointer(workdir / "checkpoints", 3)  # one save inside rationale_sft, as a kill leaves it
    checkpoints.save(
        {"policy": {"w": np.zeros(2, np.float32)}}, {"phase_index": 0, "step": 40, "config": to_dict(Config())}
    )
    checkpoints.close()
    assert main([f"workdir={workdir}", f"out={tmp_path / 'out'}"]) == 2
    assert f"ares_jax.export: {workdir} has no finished phase yet" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
