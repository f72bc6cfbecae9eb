"""The run end to end on a tiny configuration."""

import json

from ares_jax.config import load_config
from ares_jax.main import main


def test_baseline_run_writes_a_report(tmp_path, capsys):
    workdir = tmp_path / "run"
    args = [
        f"workdir={workdir}", "data.shapes.train_size=64", "data.shapes.test_size=12", "data.vocab_size=400",
        "model.d_model=32", "model.d_ff=64", "model.num_layers=1", "model.num_decoder_layers=1",
        "rationale.steps=4", "rationale.warmup_steps=1", "rationale.batch_size=8",
        "answer.steps=3", "answer.warmup_steps=1", "answer.batch_size=8",
        "eval.batch_size=8", "eval.max_new_tokens=24",
    ]
    assert main(args) == 0
    assert f"report: {workdir}/report.json" in capsys.readouterr().out
    report = json.loads((workdir / "report.json").read_text())
    baseline = report["baseline"]
    assert 0.0 <= baseline["answer_accuracy"] <= 1.0
    assert set(baseline["fluency"]) == {"repeated_sentence", "repeated_ngram", "unfinished"}
    assert 0.0 <= baseline["mean_sentence_score"] <= 1.0 and 0.0 <= baseline["rouge_l"] <= 1.0
    assert report["config"]["rationale"]["steps"] == 4
    assert load_config(None, args[1:]).data.shapes.train_size == 64
    assert (workdir / "tokenizer" / "tokenizer.json").is_file()
    assert len(report["curves"]["baseline_rationale_sft_loss"]) == 2  # logged at step 1 and the last
    assert report["teacher"]["name"] == "rule" and report["teacher"]["requests"] == 12  # one per test rationale
    assert report["teacher"]["cache_hits"] == 0
    assert report["teacher"]["by_phase"]["baseline_evaluation"]["requests"] == 12


TINY = [
    "data.shapes.train_size=64", "data.shapes.test_size=12", "data.vocab_size=400",
    "model.d_model=32", "model.d_ff=64", "model.num_layers=1", "model.num_decoder_layers=1",
    "rationale.steps=4", "rationale.warmup_steps=1", "rationale.batch_size=8",
    "answer.steps=3", "answer.warmup_steps=1", "answer.batch_size=8", "eval.batch_size=8", "eval.max_new_tokens=24",
]


def test_an_unavailable_teacher_stops_the_run_cleanly_without_leaking_the_key(tmp_path, monkeypatch, capsys):
    from fake_api_server import FakeAPIServer

    from ares_jax import loop

    key = "sk-loop-test-SECRET-987"
    monkeypatch.setenv("LOOP_TEACHER_KEY", key)
    # A 4-step model writes empty rationales, which need no Teacher: evaluate the gold ones instead.
    monkeypatch.setattr(loop, "write_rationales", lambda model, params, tok, problems, config: [p.solution for p in problems])
    server = FakeAPIServer()
    server.default = lambda body: {"status": 502}
    try:
        args = [f"workdir={tmp_path}", "teacher.backend=openai", "teacher.model=gpt-test",
                f"teacher.base_url=http://127.0.0.1:{server.port}/v1", "teacher.api_key_env=LOOP_TEACHER_KEY",
                "teacher.max_retries=1", *TINY]
        assert main(args) == 3
    finally:
        server.close()
    err = capsys.readouterr().err
    assert "still failing after 1 retries" in err and "will not be paid again" in err and key not in err
    assert len(server.requests) >= 2
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(key.encode() not in p.read_bytes() for p in written)
