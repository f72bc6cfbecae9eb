"""A damaged Teacher cache in a real run directory: the run stops with one line naming the
salvage command; `python -m ares_jax.tools.salvage_cache` keeps every readable reply (and the
damaged file); the run then asks the Teacher only for the replies that were lost and ends with
the report of an undamaged run."""

import json
import random
import sqlite3

from conftest import TINY_SHAPES_RUN

from ares_jax.main import main
from ares_jax.tools import salvage_cache

TINY = [*TINY_SHAPES_RUN, "rationale.steps=20", "rl.questions_per_round=16", "rl.epochs=1"]


def replies(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]


def test_a_damaged_cache_is_named_salvaged_and_only_the_lost_replies_asked_again(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([f"workdir={first}", *TINY]) == 0
    expected = json.loads((first / "report.json").read_text())
    with sqlite3.connect(first / "teacher_cache.sqlite") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every reply in the main file
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    held = replies(first / "teacher_cache.sqlite")
    # the same run's cache in a fresh run directory, one page in the middle overwritten (as a
    # partial copy or a bad sector leaves it)
    second.mkdir()
    data = bytearray((first / "teacher_cache.sqlite").read_bytes())
    page = len(data) // page_size // 2
    data[page * page_size : page * page_size + 200] = random.Random(0).randbytes(200)
    (second / "teacher_cache.sqlite").write_bytes(bytes(data))
    capsys.readouterr()

    assert main([f"workdir={second}", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(
        f"ares_jax: the Teacher cache {second / 'teacher_cache.sqlite'} is damaged ("
    )
    assert f"`python -m ares_jax.tools.salvage_cache {second}`" in err
    assert not (second / "checkpoints").exists()  # stopped before anything was written

    assert salvage_cache.main([str(second)]) == 0
    out = capsys.readouterr().out
    saved = replies(second / "teacher_cache.sqlite")
    assert 0 < saved < held
    assert out.startswith(f"salvage_cache: {saved} replies saved into {second / 'teacher_cache.sqlite'}, ")
    assert f", {held - saved} lost;" in out or "an unknown number lost" in out
    damaged = [p for p in second.glob("teacher_cache.sqlite.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(damaged) == 1 and damaged[0].read_bytes()[:200] == bytes(data[:200])  # kept as it was

    assert main([f"workdir={second}", *TINY]) == 0
    report = json.loads((second / "report.json").read_text())
    assert report["phases"] == expected["phases"] and report["curves"] == expected["curves"]
    assert report["teacher"]["requests"] == held - saved  # only the lost replies were asked again
