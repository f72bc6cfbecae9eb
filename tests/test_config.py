"""The config tree: YAML + dotted overrides, and clear errors that name the key."""

import re
from pathlib import Path

import pytest

from ares_jax.config import Config, ConfigError, describe_keys, load_config, to_dict
from ares_jax.main import main

CONFIGS = Path(__file__).parent.parent / "configs"


def test_defaults_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "seed: 3\nrationale:\n  steps: 20\n  warmup_steps: 2\n  batch_size: 8\n"
        "data:\n  shapes:\n    kinds: [count, lookup]\n"
    )
    config = load_config(path, ["rationale.steps=5", "rationale.warmup_steps=2", "model.d_model=32", "workdir=/tmp/x"])
    assert config.seed == 3 and config.rationale.steps == 5 and config.rationale.batch_size == 8
    assert config.rationale.learning_rate == Config().rationale.learning_rate  # untouched keys keep defaults
    assert config.data.shapes.kinds == ("count", "lookup")
    assert config.data.shapes.test_size == Config().data.shapes.test_size
    assert config.model.d_model == 32 and config.workdir == "/tmp/x"
    assert load_config(None, []) == Config()
    assert to_dict(load_config(None, []))["data"]["shapes"]["kinds"] == list(Config().data.shapes.kinds)


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "rationale.stepz=3",
            "unknown key rationale.stepz; rationale has: batch_size, first_kinds, first_steps, learning_rate",
        ),
        ("bogus=1", "unknown key bogus"),
        ("rationale.steps=many", "rationale.steps must be an integer, got 'many'"),
        ("rationale.steps=0", "rationale.steps must be positive"),
        ("model.dropout_rate=1.5", "model.dropout_rate must be in"),
        ("model.image_input=video", "model.image_input must be 'features' or 'pixels'"),
        ("teacher.rule_listing_credit=half", "teacher.rule_listing_credit must be one of ('exact', 'overlap')"),
        ("data.shapes.kinds=[count,colouring]", "data.shapes.kinds: unknown ['colouring']"),
        ("data.gold_rationales=-5", "data.gold_rationales must be 0 (the source's own) or positive, got -5"),
        ("data.shapes.gold_share=0", "data.shapes.gold_share must be in (0, 1], got 0.0"),
        ("rationale=3", "rationale is a section"),
        ("rationale.first_steps=10", "rationale.first_kinds and first_steps go together"),
        ("rationale.first_steps=2000", "rationale.first_steps must be in [0, steps (2000)), got 2000"),
        ("answer.warmup_steps=-1", "answer.warmup_steps and weight_decay must be >= 0"),
        ("answer.steps=10", "answer.warmup_steps (50) must be less than steps (10)"),
        ("teacher.backend=gpt", "teacher.backend must be one of ('rule', 'openai', 'anthropic'), got 'gpt'"),
        ("teacher.backend=anthropic", "teacher.model must name the anthropic model"),
        ("teacher.max_cost_usd=-1", "teacher.max_cost_usd must be >= 0"),
        ("model.d_model=50", "model.d_model (50) must be divisible by num_heads (4)"),
        ("seed", "not key=value"),
        ("ppo.clip_range=1.5", "ppo.clip_range must be in (0, 1)"),
        ("ppo.entropy_coef=-0.01", "ppo.entropy_coef must be >= 0, got -0.01"),
        ("rl.questions_per_round=100", "rl.questions_per_round (100) must be a multiple of prompts_per_rollout (64)"),
        ("rl.keep_best=loss", "rl.keep_best must be one of ('', 'sentence_score', 'accuracy'), got 'loss'"),
        ("rl.minibatch_size=48", "rl.minibatch_size (48) must divide prompts_per_rollout x k_samples (256)"),
        ("rounds=-1", "rounds must be >= 0"),
        (
            "rl.value_warmup_batches=-1",
            "rl.weight_decay, kl_target, eval_every, val_questions, value_warmup_batches, question_pool "
            "and seen_questions must be >= 0",
        ),
        (
            "rl.question_pool=-3",
            "rl.weight_decay, kl_target, eval_every, val_questions, value_warmup_batches, question_pool "
            "and seen_questions must be >= 0",
        ),
        (
            "rl.seen_questions=300",
            "rl.seen_questions (300) must be at most the questions a round rolls out: questions_per_round (256) "
            "and question_pool (0, 0: all)",
        ),
        (
            "rl={question_pool: 100, seen_questions: 128}",
            "rl.seen_questions (128) must be at most the questions a round rolls out: questions_per_round (256) "
            "and question_pool (100, 0: all)",
        ),
        ("method=dpo", "method must be one of ('ares', 'rl_only', 'sft_more'), got 'dpo'"),
        (
            "distributed.coordinator_address=10.0.0.2:8476",
            "distributed.coordinator_address is given but enabled is false",
        ),
        (
            "distributed={enabled: true, coordinator_address: '10.0.0.2:8476', num_processes: 2}",
            "distributed.process_id (-1) must be in 0 .. num_processes - 1 (num_processes 2) when coordinator_address",
        ),
        ("answer.lora.targets=[q,x]", "answer.lora.targets must be a non-empty list of"),
        ("answer.lora.dropout=1", "answer.lora.dropout must be in [0, 1)"),
        ("correction.questions=0", "correction.questions must be positive"),
        ("correction.gold_questions=-1", "correction.gold_questions must be 0 or more, got -1"),
        ("correction.pool=gold", "correction.pool must be one of ('all', 'answer_only'), got 'gold'"),
        ("distributed.lost_process_timeout_s=0", "distributed.lost_process_timeout_s must be positive"),
        ("checkpoint.keep=0", "checkpoint.keep must be positive"),
        ("data.source=scienceqa", "data.path must name the scienceqa data"),
        ("data.source=hf", "data.path must name the hf data"),
        ("data.image_folder=x", "unknown key data.image_folder; data has: captions, features"),
        ("data.skip_bad_records=maybe", "data.skip_bad_records must be true or false"),
        ("mesh.axis_rules=embed=model", "mesh.axis_rules: 'embed=model' must be LOGICAL=AXIS"),
        ("mesh.fsdp=0", "mesh.fsdp must be positive or -1"),
        ("mesh.fsdp=-1", "mesh.data, fsdp, tensor: at most one may be -1"),
        ("model.dtype=float16", "model.dtype must be 'float32' or 'bfloat16', got 'float16'"),
        ("profile.steps=5,2", "profile.steps must be [start, stop] with 0 <= start < stop, got [5, 2]"),
    ],
)
def test_bad_keys_and_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [override])


def test_bad_yaml_files_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match=f"{bad} is not valid YAML"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listed)


def test_command_line_reports_bad_config_before_any_work(capsys):
    assert main(["rationale.stepz=3"]) == 2
    assert "bad configuration: unknown key rationale.stepz" in capsys.readouterr().err
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "rationale.steps = " in out and "data.shapes.train_size = " in out
    assert len(describe_keys()) == out.count(" = ")


def test_default_yaml_states_the_defaults():
    from pathlib import Path

    import yaml

    path = Path(__file__).parent.parent / "configs" / "default.yaml"
    assert load_config(path) == Config()
    assert yaml.safe_load(path.read_text()) == to_dict(Config())  # every key is written out


def test_missing_teacher_key_stops_the_run_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("NOPE_TEACHER_KEY", raising=False)
    args = [
        f"workdir={tmp_path}",
        "teacher.backend=openai",
        "teacher.model=gpt-4o-mini",
        "teacher.api_key_env=NOPE_TEACHER_KEY",
    ]
    assert main(args) == 2
    assert "environment variable NOPE_TEACHER_KEY, which is not set" in capsys.readouterr().err
    assert not (tmp_path / "tokenizer").exists()  # nothing was trained or written


@pytest.mark.parametrize(
    "name, epochs, accumulation, whiten",
    [("scienceqa_base", 10, 8, True), ("scienceqa_large", 5, 16, False), ("aokvqa_base", 10, 8, True)],
)
def test_dataset_configs_carry_the_papers_settings(name, epochs, accumulation, whiten):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert (config.rl.epochs, config.ppo.accumulation_steps, config.ppo.whiten_advantages) == (
        epochs,
        accumulation,
        whiten,
    )
    assert (config.rl.k_samples, config.rl.top_k, config.rl.learning_rate, config.ppo.kl_coef) == (4, 50, 2e-5, 1e-4)
    assert (config.ppo.gamma, config.ppo.gae_lambda, config.ppo.clip_range, config.ppo.vf_coef) == (1.0, 0.95, 0.2, 1.0)
    assert config.correction.learning_rate == 8e-5
    lora = config.answer.lora
    assert (lora.enabled, lora.rank, lora.alpha, lora.dropout) == (True, 64, 128.0, 0.05)
    assert config.teacher.backend == "anthropic" and config.teacher.model.startswith("claude-3-haiku")


def test_half_gold_preset_is_finding_16s_command():
    # README finding 16 ran these overrides by hand; the preset must stay that run, nothing else
    finding_16 = [
        "data.gold_rationales=2000",
        "correction.questions=3000",
        "correction.steps=600",
        "rl.questions_per_round=1024",
        "rl.eval_every=4",
        "workdir=runs/shapes_half_gold",
    ]
    assert load_config(CONFIGS / "shapes_half_gold.yaml") == load_config(None, finding_16)


def test_a_dataset_run_without_its_files_stops_at_start_up_naming_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "unused")
    monkeypatch.chdir(tmp_path)  # the config's paths are relative to where the run starts
    assert main([f"config={CONFIGS / 'scienceqa_base.yaml'}", "workdir=run"]) == 2
    assert "ares_jax: bad data: data/scienceqa/problems.json: file not found" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written
