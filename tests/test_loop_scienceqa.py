"""The whole ARES loop on ScienceQA files in the official layout (the fixture records with
precomputed features), with an OpenAI-compatible Teacher served on 127.0.0.1."""

import gzip
import json

import numpy as np
import pytest
from conftest import TINY_MODEL
from fake_api_server import user_part

from ares_jax.main import main

KEY = "sk-test-SECRET-scienceqa-0123456789"
TINY = [
    "data.vocab_size=300",
    *TINY_MODEL,
    "model.max_source_length=96",
    "model.max_target_length=48",
    "model.max_answer_source_length=128",
    "eval.batch_size=2",
    "eval.max_new_tokens=16",
    "rationale.steps=6",
    "rationale.warmup_steps=1",
    "rationale.batch_size=2",
    "answer.steps=2",
    "answer.warmup_steps=1",
    "answer.batch_size=2",
    "rounds=1",
    "rl.questions_per_round=4",
    "rl.prompts_per_rollout=2",
    "rl.k_samples=2",
    "rl.minibatch_size=4",
    "rl.epochs=1",
    "correction.questions=2",
    "correction.steps=2",
    "correction.warmup_steps=1",
    "correction.batch_size=2",
    "checkpoint.every_steps=4",
]


def scienceqa_args(tree, server) -> list[str]:
    return [
        "data.source=scienceqa",
        f"data.path={tree / 'data' / 'scienceqa'}",
        f"data.captions={tree / 'data' / 'captions.json'}",
        f"data.images={tree / 'images'}",
        f"data.features={tree / 'vision_features' / 'detr.npy'}",
        "teacher.backend=openai",
        "teacher.model=fake-teacher",
        f"teacher.base_url=http://127.0.0.1:{server.port}/v1",
        "teacher.api_key_env=TEST_TEACHER_KEY",
        "teacher.backoff_s=0.01",
    ]


def test_ares_runs_on_scienceqa_files(sqa, server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_TEACHER_KEY", KEY)
    workdir = tmp_path / "run"
    assert main([f"workdir={workdir}", *scienceqa_args(sqa, server), *TINY, "profile.steps=0,1"]) == 0
    report = json.loads((workdir / "report.json").read_text())
    # the profile window: a jax.profiler trace of the first PPO step, readable by XProf / Perfetto
    traces = list((workdir / "profile").glob("plugins/profile/*/*.trace.json.gz"))
    assert len(traces) == 1 and list((workdir / "profile").glob("plugins/profile/*/*.xplane.pb"))
    assert "ppo_step" in gzip.decompress(traces[0].read_bytes()).decode()  # the step's named scope
    assert list(report["phases"]) == ["baseline", "rl_1", "sft_1"]
    assert [example["id"] for example in report["examples"]] == ["4", "5"]  # the test split
    assert report["ares"]["judgements"]["judgements"] == 2 * 2  # both test problems, both orders
    assert report["teacher"]["requests"] > 0
    # ScienceQA's category table for every evaluation: test questions 4 (natural science, grade 4,
    # a hint and an image) and 5 (natural science, grade 5, a hint, no image)
    for label, phase in report["phases"].items():
        answers = {r["id"]: r["answer"] for r in json.loads((workdir / "eval" / f"{label}.json").read_text())}
        right = {"4": answers["4"] == 1, "5": answers["5"] == 1}
        table = phase["scienceqa"]
        assert list(table) == ["NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Avg"]
        assert table["NAT"] == table["TXT"] == table["G1-6"] == table["Avg"] == phase["answer_accuracy"]
        assert table["Avg"] == (right["4"] + right["5"]) / 2 and table["IMG"] == float(right["4"])
        assert table["SOC"] is table["LAN"] is table["NO"] is table["G7-12"] is None
    assert "|   ScienceQA NAT |" in (workdir / "report.md").read_text()
    # The Teacher saw the question's picture (test question "4" has one, "5" has none) and its
    # caption joined to the hint, as the prompts of the rationale model.
    bodies = [json.dumps(r["body"]) for r in server.requests]
    osprey = [r for r in server.requests if "grabbing prey" in json.dumps(r["body"])]
    assert osprey and all(user_part(r["body"], "image_url") for r in osprey)
    assert any("warm bowl of soup" in body for body in bodies)
    # The key went to the server in the header and nowhere into the run's files.
    headers = {name.lower(): value for name, value in server.requests[0]["headers"].items()}
    assert headers["authorization"] == f"Bearer {KEY}"
    for path in workdir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    # Rerunning the finished run asks the Teacher nothing more.
    asked = len(server.requests)
    assert main([f"workdir={workdir}", *scienceqa_args(sqa, server), *TINY, "profile.steps=0,1"]) == 0
    assert len(server.requests) == asked


def test_bad_data_stops_the_run_before_anything_is_written(sqa, server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TEST_TEACHER_KEY", KEY)
    (sqa / "images" / "test" / "4" / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    workdir = tmp_path / "run"
    assert main([f"workdir={workdir}", *scienceqa_args(sqa, server), *TINY]) == 2
    error = capsys.readouterr().err
    assert "ares_jax: bad data: " in error and "problems.json: record '4': image " in error
    assert not workdir.exists() and not server.requests


def test_the_rule_teacher_is_refused_for_a_real_dataset(sqa, tmp_path, capsys):
    args = [a for a in scienceqa_args(sqa, server=type("S", (), {"port": 1})) if not a.startswith("teacher.")]
    assert main([f"workdir={tmp_path / 'run'}", *args]) == 2
    assert "teacher.backend=rule judges only the built-in task" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_pretrained_start_is_the_folders_model(sqa, server, tmp_path, monkeypatch):
    """`model.pretrained`: the run takes the folder's tokenizer and weights. With a learning rate
    too small to move a float32 weight, the baseline's rationales are exactly what HF's own
    PyTorch model writes greedily from the same folder (text-only run: no image fusion)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from ares_jax.config import DataConfig
    from ares_jax.data import rationale_prompt, strip_solution_tag
    from ares_jax.data.batching import build_tokenizer
    from ares_jax.data.load import load_split

    data = DataConfig(source="scienceqa", path=str(sqa / "data" / "scienceqa"))
    tokenizer = build_tokenizer(load_split(data, "train"), 300)
    folder = tmp_path / "t5"
    tokenizer.save(folder)
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(
        transformers.T5Config(
            vocab_size=tokenizer.vocab_size,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=1,
            num_decoder_layers=1,
            num_heads=4,
            dropout_rate=0.0,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    ).eval()
    with torch.no_grad():  # HF's init writes the same token again and again: make the prompt matter
        for name, param in hf.named_parameters():
            param.add_(0.3 * torch.randn_like(param)) if "layer_norm" in name else param.mul_(4.0)
        hf.shared.weight[:3] *= 0.1  # pad, eos, unk: rarely the argmax, so the rationales have text
    hf.save_pretrained(folder)

    monkeypatch.setenv("TEST_TEACHER_KEY", KEY)
    workdir = tmp_path / "run"
    args = [a for a in scienceqa_args(sqa, server) if not a.startswith("data.features")]
    overrides = [
        *TINY,
        "rounds=0",
        "rationale.learning_rate=1e-12",
        "answer.learning_rate=1e-12",
        f"model.pretrained={folder}",
    ]
    assert main([f"workdir={workdir}", *args, *overrides]) == 0
    baseline = json.loads((workdir / "eval" / "baseline.json").read_text())
    test = load_split(data, "test")
    assert [row["id"] for row in baseline] == [p.id for p in test]
    for problem, row in zip(test, baseline):
        ids, mask = tokenizer.batch_encode([rationale_prompt(problem)], 96)  # model.max_source_length
        with torch.no_grad():
            out = hf.generate(
                input_ids=torch.as_tensor(np.asarray(ids)),
                attention_mask=torch.as_tensor(np.asarray(mask)),
                max_new_tokens=16,
                do_sample=False,
                num_beams=1,
            )  # eval.max_new_tokens
        expected = strip_solution_tag(tokenizer.decode(out[0, 1:].tolist()))
        assert row["rationale"] == expected and len(expected) >= 8
    assert baseline[0]["rationale"] != baseline[1]["rationale"]
