"""Predict: a finished run's models on any split reproduce the report's test figures exactly;
an exported folder predicts as the run's models; bad input stops in one line, writing nothing."""

import json

from ares_jax.export import main as export_main
from ares_jax.predict import main


def test_predict_on_the_test_split_reproduces_the_report(lora_run, tmp_path, capsys):
    out = tmp_path / "test.jsonl"
    assert main([f"workdir={lora_run}", f"out={out}"]) == 0
    report = json.loads((lora_run / "report.json").read_text())
    baseline = report["baseline"]
    metrics = json.loads((tmp_path / "test.jsonl.metrics.json").read_text())
    assert metrics["answer_accuracy"] == baseline["answer_accuracy"]
    assert metrics["answer_accuracy_by_kind"] == baseline["answer_accuracy_by_kind"]
    assert metrics["rouge_l"] == baseline["rouge_l"] and metrics["fluency"] == baseline["fluency"]
    assert metrics["mean_sentence_score"] is None  # no Teacher asked without score=true
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    written = json.loads((lora_run / "eval" / "baseline.json").read_text())
    assert [(x["id"], x["rationale"], x["answer"]) for x in lines] == [
        (x["id"], x["rationale"], x["answer"]) for x in written
    ]
    assert all(x["correct"] == (x["answer"] == x["gold"]) for x in lines)
    assert f"accuracy {baseline['answer_accuracy']:.4f} on 12 problems of split test" in capsys.readouterr().out


def test_predict_from_exported_folders_and_another_split(lora_run, tmp_path, capsys):
    for role in ("policy", "answer"):
        assert export_main([f"workdir={lora_run}", f"out={tmp_path / role}", f"model={role}"]) == 0
    from_run, from_folders = tmp_path / "run.jsonl", tmp_path / "folders.jsonl"
    settings = ["split=val", "data.shapes.val_size=8", "data.vocab_size=400"]
    assert main([f"workdir={lora_run}", f"out={from_run}", *settings]) == 0
    args = [f"pretrained={tmp_path / 'policy'}", f"answer_pretrained={tmp_path / 'answer'}", f"out={from_folders}"]
    assert main([*args, *settings, "model.max_target_length=24"]) == 2  # a training setting
    assert "model.max_target_length: predict takes only data.*, eval.*, mesh.*, teacher.* settings" in (
        capsys.readouterr().err
    )
    assert main([*args, *settings, "eval.max_new_tokens=24", "eval.batch_size=8"]) == 0
    run_lines = [json.loads(line) for line in from_run.read_text().splitlines()]
    assert len(run_lines) == 8
    folder_lines = [json.loads(line) for line in from_folders.read_text().splitlines()]
    assert [x["answer"] for x in folder_lines] == [x["answer"] for x in run_lines]
    assert [x["rationale"] for x in folder_lines] == [x["rationale"] for x in run_lines]


def test_bad_input_stops_in_one_line_and_writes_nothing(lora_run, tmp_path, capsys):
    before = sorted(p for p in lora_run.rglob("*") if p.is_file())
    out = tmp_path / "x.jsonl"
    not_t5 = tmp_path / "not_t5"
    not_t5.mkdir()
    (not_t5 / "config.json").write_text("{}")
    cases = [
        ([f"workdir={lora_run}", "split=dev"], "bad data: data.source=shapes: unknown split 'dev'"),
        ([f"workdir={lora_run}", "phase=sft_3"], "phase=sft_3: not a finished phase whose checkpoint is kept"),
        ([f"workdir={tmp_path / 'nothing'}"], f"{tmp_path / 'nothing'} holds no checkpoints"),
        ([f"pretrained={not_t5}"], f"{not_t5} is not a T5 folder ("),
        ([f"workdir={lora_run}", "data.shapes.rows=0"], "bad setting: data.shapes: rows must be 1..9"),
    ]
    for arguments, message in cases:
        assert main([*arguments, f"out={out}"]) == 2, arguments
        err = capsys.readouterr().err.strip()
        assert err.startswith("ares_jax.predict: ") and message in err and "\n" not in err, err
        assert not out.exists()
    assert sorted(p for p in lora_run.rglob("*") if p.is_file()) == before


def test_score_true_asks_the_runs_teacher_with_its_own_cache(lora_run, tmp_path):
    cache = lora_run / "teacher_cache.sqlite"
    before = cache.read_bytes()
    out = tmp_path / "scored.jsonl"
    assert main([f"workdir={lora_run}", f"out={out}", "score=true"]) == 0
    metrics = json.loads((tmp_path / "scored.jsonl.metrics.json").read_text())
    baseline = json.loads((lora_run / "report.json").read_text())["baseline"]
    assert metrics["mean_sentence_score"] == baseline["mean_sentence_score"]  # the rule Teacher, the same texts
    assert (tmp_path / "scored.jsonl.teacher_cache.sqlite").exists() and cache.read_bytes() == before
