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
