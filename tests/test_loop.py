"""The ARES loop end to end on a tiny configuration: the report, resume after `kill -9` during RL
and after SIGTERM during SFT (same results, no Teacher request answered twice)."""

import contextlib
import io
import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import TINY_SHAPES_RUN

from ares_jax.checkpoint import Checkpointer
from ares_jax.export import finished_phases
from ares_jax.main import main

TINY = [
    *TINY_SHAPES_RUN,
    "rationale.steps=120",
    "rationale.learning_rate=0.01",
    "rl.questions_per_round=32",
    "rl.epochs=2",
    "checkpoint.every_steps=8",
]
REPORT_KEYS = {"baseline", "ares", "phases", "corrections", "curves", "teacher", "seconds", "config", "examples"}


def most_writes(workdir) -> int:
    """The most times any Teacher request was answered (1: none was asked twice)."""
    with sqlite3.connect(workdir / "teacher_cache.sqlite") as db:
        return db.execute("SELECT MAX(writes) FROM replies").fetchone()[0]


def results_of(report):
    """What must not depend on interruptions: every evaluation and every curve."""
    return report["phases"], report["curves"], report["ares"]["win_rate_vs_baseline"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run (in this process), its report and its Teacher cache."""
    workdir = tmp_path_factory.mktemp("reference")
    assert main([f"workdir={workdir}", *TINY]) == 0
    return workdir, json.loads((workdir / "report.json").read_text())


def test_run_writes_the_report_table_plot_and_metrics(reference, capsys):
    workdir, report = reference
    assert REPORT_KEYS <= set(report)
    for side in ("baseline", "ares"):
        assert 0.0 <= report[side]["answer_accuracy"] <= 1.0
        assert set(report[side]["fluency"]) == {"repeated_sentence", "repeated_ngram", "unfinished"}
    assert 0.0 <= report["ares"]["win_rate_vs_baseline"] <= 1.0
    assert report["ares"]["judgements"]["judgements"] == 2 * 12  # every test problem, both orders
    assert list(report["phases"]) == ["baseline", "rl_1", "sft_1"]
    assert len(report["curves"]["rl_1/sentence_score"]) == 4  # 32 questions, 8 per rollout batch
    assert [step for step, _ in report["curves"]["rationale_sft/loss"]] == [0, 25, 50, 75, 100, 119]
    # The rationale model learns: its loss falls well below the start.
    losses = [loss for _, loss in report["curves"]["rationale_sft/loss"]]
    assert losses[-1] < 0.6 * losses[0]
    teacher = report["teacher"]
    # Requests: 12 baseline scores + 4 x 16 rollout scores + 3 x 8 validation scores (before the
    # round, after rollout batches 2 and 4) + 12 after RL + 16 corrections + 8 validation scores
    # after the correction SFT + 12 after SFT + 24 judgements; repeated identical ones are cache hits.
    assert teacher["requests"] + teacher["cache_hits"] == 12 + 64 + 24 + 12 + 16 + 8 + 12 + 24
    assert 0 < teacher["validation_requests"]["rl_1"] <= 24
    assert 0 < teacher["validation_requests"]["sft_1"] <= 8
    with sqlite3.connect(workdir / "teacher_cache.sqlite") as db:
        assert teacher["requests"] == db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    assert most_writes(workdir) == 1
    # the checkpoints: the models after each evaluation (export, predict) and the last three
    assert {"eval_baseline", "eval_rl_1", "eval_sft_1", "comparison"} <= set(finished_phases(workdir)[1])
    checkpoints = Checkpointer(workdir / "checkpoints", 3)
    assert sum(not checkpoints.record(number)["kept"] for number in checkpoints.numbers()) <= 3
    assert set(teacher["by_phase"]) >= {"eval_baseline", "rl_1", "correction_1", "comparison"}
    assert teacher["by_phase"]["correction_1"]["requests"] + teacher["by_phase"]["correction_1"]["cache_hits"] == 16
    markdown = (workdir / "report.md").read_text()
    assert "| answer accuracy |" in markdown and "after RL 1" in markdown and "after SFT 1" in markdown
    assert (workdir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {"rationale_sft", "rl_1", "sft_1", "eval_baseline"} <= {line["phase"] for line in lines}
    rollouts = [line for line in lines if line["phase"] == "rl_1" and "kl" in line]
    assert [line["step"] for line in rollouts] == [0, 1, 2, 3]
    assert all(
        {
            "policy_loss",
            "value_loss",
            "sentence_score",
            "entropy",
            "explained_variance",
            "clipfrac",
            "pass_at_k",
            "sample_accuracy",
            "policy_grad_norm",
            "value_grad_norm",
        }
        <= set(line)
        for line in rollouts
    )
    assert all(line["entropy"] > 0 and 0 <= line["sample_accuracy"] <= line["pass_at_k"] <= 1 for line in rollouts)
    # RL progress on held-out questions: greedy on the 8 validation problems before the round and
    # after every 2 rollout batches (rl.eval_every), in the log, the curves and the report.
    from ares_jax.data.prompts import parse_answer
    from ares_jax.data.shapes.task import ShapesTaskConfig, make_split

    val = {p.id: p for p in make_split(ShapesTaskConfig(), "val", 8)}
    validations = [line for line in lines if line["phase"] == "rl_1" and "val_accuracy" in line]
    assert [line["step"] for line in validations] == [0, 2, 4]
    assert [x for x, _ in report["curves"]["rl_1/val_sentence_score"]] == [0, 2, 4]
    assert [x for x, _ in report["curves"]["rl_1/val_sentence_score_non_neutral"]] == [0, 2, 4]
    # ... and once after the correction SFT (at its last step); the report's table: the baseline
    # (RL 1's start), after RL 1, after SFT 1
    assert [x for x, _ in report["curves"]["sft_1/val_accuracy"]] == [4]
    assert list(report["validation"]) == ["baseline", "rl_1", "sft_1"]
    assert [report["validation"][label]["accuracy"] for label in report["validation"]] == [
        report["curves"]["rl_1/val_accuracy"][0][1],
        report["curves"]["rl_1/val_accuracy"][-1][1],
        report["curves"]["sft_1/val_accuracy"][0][1],
    ]
    written = json.loads((workdir / "eval" / "sft_1_val_4.json").read_text())
    assert report["validation"]["sft_1"]["accuracy"] == pytest.approx(
        sum(r["answer"] == val[r["id"]].answer for r in written) / len(written)
    )
    assert "## Held-out questions (validation split, greedy), after each phase" in markdown
    assert "| | baseline | after RL 1 | after SFT 1 |" in markdown
    assert (
        "RL: rewards at sentence ends, GAE (gamma 1.0, lambda 0.95) over the value model, warmed up alone on "
        "the first 2 rollout batches, advantages whitened, KL coefficient 0.0001, learning rate 0.0001"
    ) in markdown
    assert "Correction SFT: the Teacher's corrections of 16 rationales, 4 steps at learning rate 0.001." in markdown
    # rl.value_warmup_batches (2 by default): the first two rollout batches train only the value
    # model, so the policy still equals the reference when the third batch is sampled
    assert [kl for _, kl in report["curves"]["rl_1/kl"]][:3] == [0.0, 0.0, 0.0]
    assert report["curves"]["rl_1/kl"][3][1] != 0.0
    assert (workdir / "eval" / "rl_1_val_0.json").read_text() == (workdir / "eval" / "rl_1_val_2.json").read_text()
    # the rationales' own conclusions, recounted from the written validation rationales
    written = json.loads((workdir / "eval" / "rl_1_val_4.json").read_text())
    right = [parse_answer(r["rationale"], len(val[r["id"]].choices)) == val[r["id"]].answer for r in written]
    assert report["curves"]["rl_1/val_conclusion_accuracy"][-1][1] == pytest.approx(sum(right) / len(right))
    # the sentence score without neutral sentences, rescored from the same written rationales
    from ares_jax.teacher import RuleTeacher
    from ares_jax.text import split_sentences

    decisive_means = []
    for r in written:
        scores = RuleTeacher().sentence_scores(val[r["id"]], split_sentences(r["rationale"]))
        if decisive := [x for x in scores if x != 0.5]:
            decisive_means.append(sum(decisive) / len(decisive))
    assert report["curves"]["rl_1/val_sentence_score_non_neutral"][-1][1] == pytest.approx(
        sum(decisive_means) / len(decisive_means)
    )
    assert "|   without neutral (0.5) sentences |" in markdown
    corrections = json.loads((workdir / "corrections" / "round_1.json").read_text())
    assert len(corrections) == 16 and {"id", "rl_rationale", "corrected"} == set(corrections[0])


def test_a_finished_run_rerun_asks_the_teacher_nothing(reference, capsys):
    workdir, report = reference
    assert main([f"workdir={workdir}", *TINY]) == 0
    again = json.loads((workdir / "report.json").read_text())
    assert again["teacher"]["requests"] == report["teacher"]["requests"]
    assert results_of(again) == results_of(report)
    assert "report: " in capsys.readouterr().out


def test_resuming_with_other_settings_is_refused_and_changes_nothing(reference, capsys):
    workdir, _ = reference

    def contents():  # SQLite's -wal/-shm side files belong to open connections, not to the data
        return {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))}

    before = contents()
    assert main([f"workdir={workdir}", *TINY, "rl.epochs=3", "data.vocab_size=300"]) == 2
    err = capsys.readouterr().err
    assert "rl.epochs" in err and "data.vocab_size" in err
    assert contents() == before


def test_a_baseline_only_run_with_a_curriculum_and_lora_answers(tmp_path, sft_rows_seen):
    from ares_jax.data.shapes import ShapesTaskConfig, make_split

    args = [
        f"workdir={tmp_path}",
        *TINY,
        "rounds=0",
        "rationale.steps=10",
        "rationale.first_kinds=[count]",
        "rationale.first_steps=4",
        "answer.lora.enabled=true",
        "answer.lora.rank=2",
        "answer.lora.targets=q,v,wo",
    ]
    assert main(args) == 0
    # the curriculum: the first 4 rationale steps on the count questions of the 64 training problems
    count = sum(p.extras["question_kind"] == "count" for p in make_split(ShapesTaskConfig(train_size=64), "train"))
    assert 8 <= count < 64 and sft_rows_seen[:10] == [count] * 4 + [64] * 6
    report = json.loads((tmp_path / "report.json").read_text())
    # no rounds: the baseline is not judged against itself
    assert list(report["phases"]) == ["baseline"] and report["ares"] is None
    assert "comparison" not in report["teacher"]["by_phase"]
    assert report["teacher"]["requests"] + report["teacher"]["cache_hits"] == 12  # the test rationales' scores
    markdown = (tmp_path / "report.md").read_text()
    assert "A baseline-only run (rounds=0): no ARES rounds, nothing to compare." in markdown
    assert "win" not in markdown
    # Finished: a rerun restores the adapted answer model's tree (its shape has the adapters) and
    # rebuilds the same report.
    assert main(args) == 0
    assert json.loads((tmp_path / "report.json").read_text())["phases"] == report["phases"]


def test_settings_a_checkpoint_lacks_count_as_their_defaults():
    from ares_jax.loop.state import _changed_keys

    saved, defaults = {"a": 1, "s": {"b": 2}}, {"a": 0, "s": {"b": 0}, "added": 5}
    assert _changed_keys(saved, {"a": 1, "s": {"b": 3}, "added": 5}, defaults) == ["s.b"]
    assert _changed_keys(saved, {"a": 1, "s": {"b": 2}, "added": 6}, defaults) == ["added"]
    assert _changed_keys(saved, {"a": 1, "s": {"b": 2}, "added": 5}, defaults) == []


def test_a_run_saved_before_the_task_lost_gold_rationales_is_not_taken_for_the_new_default():
    """A checkpoint written before `data.shapes.gold_share` existed trained on every gold rationale:
    resuming it, or starting from it as a baseline, under the new default (3 in 4) names the key."""
    from ares_jax.config import Config, to_dict
    from ares_jax.loop.state import _changed_keys, saved_config_defaults

    saved = to_dict(Config())
    del saved["data"]["shapes"]["gold_share"]  # as an older version wrote it
    assert saved_config_defaults()["data"]["shapes"]["gold_share"] == 1.0
    assert saved_config_defaults()["rl"] == to_dict(Config())["rl"]  # every other key: its default
    assert _changed_keys(saved, to_dict(Config()), saved_config_defaults()) == ["data.shapes.gold_share"]
    every_gold = to_dict(Config())
    every_gold["data"]["shapes"]["gold_share"] = 1.0
    assert _changed_keys(saved, every_gold, saved_config_defaults()) == []


def start(workdir):
    command = [sys.executable, "-m", "ares_jax.main", f"workdir={workdir}", *TINY]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_metric(process, workdir, phase, step=None, timeout=300):
    """Blocks until `metrics.jsonl` has a line of `phase` (of its rollout batch `step`, if given)."""
    deadline = time.time() + timeout
    path = workdir / "metrics.jsonl"

    def wanted(line):
        return line["phase"] == phase and (step is None or (line["step"] == step and "kl" in line))

    while time.time() < deadline:
        assert process.poll() is None, process.communicate()
        if path.exists() and any(wanted(json.loads(line)) for line in path.read_text().splitlines()):
            return
        time.sleep(0.02)
    raise AssertionError(f"no {phase} metrics within {timeout} s")


def finish_and_compare(workdir, reference):
    assert main([f"workdir={workdir}", *TINY]) == 0
    report = json.loads((workdir / "report.json").read_text())
    _, expected = reference
    assert set(report) == set(expected)
    assert results_of(report) == results_of(expected)
    assert most_writes(workdir) == 1  # the Teacher answered no request twice


@pytest.fixture(scope="module")
def killed_in_rl(tmp_path_factory):
    """A run killed with SIGKILL during RL (after a checkpoint inside the phase); while it ran, a second launch
    of the same command. Returns the work directory (tests resume copies of it), the killed
    process's pid, and the second launch's exit code and stderr."""
    workdir = tmp_path_factory.mktemp("killed")
    process = start(workdir)
    # RL round 1's third rollout batch is done: the checkpoint after its second holds a train state
    wait_for_metric(process, workdir, "rl_1", step=2)
    refusal = io.StringIO()
    with contextlib.redirect_stderr(refusal):
        code = main([f"workdir={workdir}", *TINY])
    process.send_signal(signal.SIGKILL)
    process.wait()
    return workdir, process.pid, code, refusal.getvalue().strip()


def copy_of(workdir, tmp_path):
    shutil.copytree(workdir, tmp_path / "run")
    return tmp_path / "run"


def test_kill_9_during_rl_then_resume(reference, killed_in_rl, tmp_path, capsys):
    killed, pid, code, err = killed_in_rl
    # the second launch of the same command while the first ran: refused at once, naming the holder
    assert code == 2
    assert err.startswith(f"ares_jax: workdir {killed} is in use by another run (host ") and "\n" not in err
    assert f", pid {pid}, started " in err
    workdir = copy_of(killed, tmp_path)
    record = Checkpointer(workdir / "checkpoints", 3).latest_record()
    assert record["phase"] == "rl_1"
    finish_and_compare(workdir, reference)  # the killed run's lock is taken over; same report
    assert f"taking over the lock of a run that is gone (host {socket.gethostname()}, pid {pid}" in (
        capsys.readouterr().out
    )
    assert (workdir / ".lock").read_text() == ""  # released at the end


def cut_short(item_folder):
    """Truncates the largest data file of one checkpointed tree (a full disk, a partial copy)."""
    data = max((item_folder / "ocdbt.process_0" / "d").iterdir(), key=lambda f: f.stat().st_size)
    data.write_bytes(data.read_bytes()[:1000])
    return data


def test_damaged_checkpoints_are_set_aside_and_an_older_one_resumed(reference, killed_in_rl, tmp_path, capsys):
    workdir = copy_of(killed_in_rl[0], tmp_path)
    folder = workdir / "checkpoints"
    numbers = Checkpointer(folder, 3).numbers()
    newest, middle = numbers[-1], numbers[-2]
    assert "train" in Checkpointer(folder, 3).record(newest)["trees"]
    data = cut_short(folder / str(newest) / "train")  # found by the sizes saved with the checkpoint
    metadata = folder / str(middle) / "record" / "metadata"
    metadata.write_text("x" * len(metadata.read_text()))  # the same size: found as orbax reads it
    finish_and_compare(workdir, reference)  # from the oldest: the same report, no reply paid twice
    out = capsys.readouterr().out.splitlines()
    reasons = {
        newest: f"({data.relative_to(folder / str(newest))} is 1000 bytes, ",
        middle: "(JSONDecodeError: Expecting value",
    }
    for number, reason in reasons.items():
        (line,) = [line for line in out if line.startswith(f"checkpoint {number} in {folder} does not restore ")]
        assert reason in line
        assert line.endswith(f": set aside as {folder}/{number}.corrupt; trying checkpoint {number - 1}")
        assert (folder / f"{number}.corrupt").is_dir()  # kept, nothing deleted
    assert f"resuming {workdir}: phase " in "\n".join(out)


def test_a_train_state_orbax_cannot_read_is_set_aside_as_its_phase_starts(reference, killed_in_rl, tmp_path, capsys):
    """A checkpoint without the list of its files' sizes (killed before it was written), with its
    train state cut short: found when the resumed phase restores it; the run resumes again."""
    workdir = copy_of(killed_in_rl[0], tmp_path)
    folder = workdir / "checkpoints"
    newest = Checkpointer(folder, 3).latest_number()
    (folder / str(newest) / "files.json").unlink()
    cut_short(folder / str(newest) / "train")
    finish_and_compare(workdir, reference)
    out = capsys.readouterr().out
    assert f"checkpoint {newest} in {folder} does not restore (" in out
    assert f": set aside as {folder}/{newest}.corrupt; trying checkpoint {newest - 1}" in out


def test_no_checkpoint_restores_stops_in_one_line(killed_in_rl, tmp_path, capsys):
    workdir = copy_of(killed_in_rl[0], tmp_path)
    folder = workdir / "checkpoints"
    numbers = Checkpointer(folder, 3).numbers()
    for number in numbers:
        (folder / str(number) / "record" / "metadata").write_text("")
    assert main([f"workdir={workdir}", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"ares_jax: checkpoint {numbers[0]} in {folder} does not restore (record/metadata is 0 bytes")
    assert err.endswith(
        "and no older checkpoint is left to try. Nothing was deleted; to start this run again from "
        f"the beginning (the Teacher cache keeps every reply), move {folder} aside"
    )
    assert (folder / str(numbers[0])).is_dir()
    assert all((folder / f"{number}.corrupt").is_dir() for number in numbers[1:])


# The failed save runs in its own process: orbax's abandoned writes finish on their threads after
# `save` has returned, and must neither reach the test process nor print after the run's last line.
FULL_DISK_RUN = """
import resource, signal, sys
from ares_jax.checkpoint import Checkpointer
from ares_jax.main import main

real_save = Checkpointer.save

def save_on_a_full_disk(self, items, record, kept=False):
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limits[1]))
    try:
        return real_save(self, items, record, kept)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)

Checkpointer.save = save_on_a_full_disk
sys.exit(main(sys.argv[1:]))
"""


def test_a_failed_save_keeps_the_last_checkpoint_and_stops_then_resume(reference, killed_in_rl, tmp_path, capsys):
    """A disk that fills up during a save: the process may write no file past 4 KB while
    `Checkpointer.save` runs, so orbax's own writes fail as on a full disk (EFBIG)."""
    workdir = copy_of(killed_in_rl[0], tmp_path)
    checkpoints = Checkpointer(workdir / "checkpoints", 3)
    last, last_record = checkpoints.latest_number(), checkpoints.latest_record()
    command = [sys.executable, "-c", FULL_DISK_RUN, f"workdir={workdir}", *TINY]
    process = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert process.returncode == 3, process.stderr
    # above the last line: progress bars only; none of orbax's error lines or tracebacks, even at exit
    err = process.stderr.strip().splitlines()
    assert not [line for line in err[:-1] if "Error" in line or "Traceback" in line or "never" in line], err
    assert err[-1].startswith(f"ares_jax: stopped: checkpoint {last + 1} could not be written in ")
    assert "File too large" in err[-1]
    assert err[-1].endswith(
        f"checkpoint {last} is the latest and intact. Free space (or make the folder writable) and run the same "
        "command to resume from the latest checkpoint."
    )
    checkpoints.reload()
    assert checkpoints.latest_number() == last and checkpoints.latest_record() == last_record
    finish_and_compare(workdir, reference)
    assert f"resuming {workdir}: phase {last_record['phase']} (step {last_record['step']})" in capsys.readouterr().out


def test_sigterm_during_sft_saves_and_exits_0_then_resume(reference, tmp_path):
    process = start(tmp_path)
    wait_for_metric(process, tmp_path, "rationale_sft")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "Run the same command to resume" in err
    record = Checkpointer(tmp_path / "checkpoints", 3).latest_record()
    assert record["phase"] == "rationale_sft" and 0 < record["step"] < 120
    assert "train" in record["trees"]  # the optimizer state and step inside the phase
    finish_and_compare(tmp_path, reference)


def test_an_unavailable_teacher_stops_the_run_cleanly_without_leaking_the_key(tmp_path, monkeypatch, capsys):
    from fake_api_server import FakeAPIServer

    from ares_jax.loop import phases

    key = "sk-loop-test-SECRET-987"
    monkeypatch.setenv("LOOP_TEACHER_KEY", key)
    # A barely trained model writes empty rationales, which need no Teacher: evaluate the gold ones instead.
    monkeypatch.setattr(
        phases, "write_rationales", lambda model, params, tok, problems, *rest: [p.solution for p in problems]
    )
    server = FakeAPIServer()
    server.default = lambda body: {"status": 502}
    try:
        args = [
            f"workdir={tmp_path}",
            "teacher.backend=openai",
            "teacher.model=gpt-test",
            f"teacher.base_url=http://127.0.0.1:{server.port}/v1",
            "teacher.api_key_env=LOOP_TEACHER_KEY",
            "teacher.max_retries=1",
            *TINY,
            "rationale.steps=4",
        ]
        assert main(args) == 3
    finally:
        server.close()
    err = capsys.readouterr().err
    assert "still failing after 1 retries" in err and "will not be paid again" in err and key not in err
    assert len(server.requests) >= 2
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(key.encode() not in p.read_bytes() for p in written)
