"""The Teacher cache survives concurrent writers and a kill -9 in the middle of writing."""

import os
import signal
import subprocess
import sys
import time

from ares_jax.teacher.cache import TeacherCache, TeacherCacheDamaged

WRITER = """
import sys
from ares_jax.teacher.cache import TeacherCache
cache = TeacherCache(sys.argv[1])
name, count = sys.argv[2], int(sys.argv[3])
for i in range(count):
    cache.put(f"{name}-{i}", "score", "reply " * 200 + f"{name}-{i}", 10, 2)
print("done", flush=True)
"""


def _writer(path, name, count):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), name, str(count)], stdout=subprocess.PIPE, text=True
    )


def test_round_trip_and_concurrent_writers(tmp_path):
    path = tmp_path / "cache.sqlite"
    cache = TeacherCache(path)
    assert cache.get("k") is None
    cache.put("k", "judge", '{"better": "A"}', 5, 1)
    assert cache.get("k") == '{"better": "A"}'
    writers = [_writer(path, f"w{n}", 150) for n in range(3)]
    assert all(w.wait(timeout=120) == 0 for w in writers)
    assert len(cache) == 1 + 3 * 150
    assert cache.get("w2-149").endswith("w2-149")


def test_kill_9_mid_write_leaves_a_readable_cache(tmp_path):
    path = tmp_path / "cache.sqlite"
    TeacherCache(path).put("before", "score", "kept", 1, 1)
    writer = _writer(path, "killed", 100000)
    deadline = time.time() + 30
    while len(TeacherCache(path)) < 50 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    cache = TeacherCache(path)
    n = len(cache)
    assert 50 <= n < 100001
    assert cache.get("before") == "kept"
    last = n - 2  # every committed reply is whole
    assert cache.get(f"killed-{last}").endswith(f"killed-{last}")
    cache.put("after", "score", "still writable", 1, 1)
    assert cache.get("after") == "still writable"


def test_a_file_that_is_not_sqlite_is_named(tmp_path):
    import pytest

    bad = tmp_path / "cache.sqlite"
    bad.write_text("not a database, just text " * 100)
    with pytest.raises(TeacherCacheDamaged) as damaged:
        TeacherCache(bad)
    assert str(damaged.value) == (
        f"the Teacher cache {bad} is damaged (file is not a database); copy every readable reply into a fresh "
        f"cache with `python -m ares_jax.tools.salvage_cache {tmp_path}` (the damaged file is kept beside it), "
        "then run the same command again"
    )
