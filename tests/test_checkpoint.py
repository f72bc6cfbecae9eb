"""Checkpoint pruning: the newest `keep`, plus every checkpoint saved `kept`."""

import numpy as np

from ares_jax.checkpoint import Checkpointer


def test_the_newest_keep_and_the_kept_ones_survive(tmp_path):
    checkpoints = Checkpointer(tmp_path, keep=2)
    for number in range(1, 7):
        saved = checkpoints.save({"params": {"w": np.full((2,), number, np.float32)}}, {"n": number}, kept=number == 2)
        assert saved == number
    assert checkpoints.numbers() == [2, 5, 6]
    assert checkpoints.record(2)["kept"] and not checkpoints.record(6)["kept"]
    checkpoints.close()
    again = Checkpointer(tmp_path, keep=2)  # a resumed run reads which were kept from the records
    again.save({"params": {"w": np.zeros((2,), np.float32)}}, {"n": 7})
    assert again.numbers() == [2, 6, 7]
    np.testing.assert_array_equal(again.restore("params", {"w": np.zeros((2,), np.float32)}, 2)["w"], [2, 2])


def test_a_successful_save_leaves_logging_and_the_unraisable_hook_as_they_were(tmp_path):
    import logging
    import sys

    levels = {name: logging.getLogger(name).level for name in ("absl", "asyncio")}
    hook = sys.unraisablehook
    Checkpointer(tmp_path, 3).save({"tree": {"w": np.ones(3, np.float32)}}, {"phase": "x"})
    assert {name: logging.getLogger(name).level for name in levels} == levels
    assert sys.unraisablehook is hook
