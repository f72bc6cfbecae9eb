import functools
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))  # test helpers such as fake_api_server

# One on-disk compilation cache for this test session, inherited by the runs the tests start as
# subprocesses: a resumed run then reuses what the first run compiled instead of compiling again.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="ares_jax_test_xla_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The tests compile many small programs and run each briefly, so XLA:CPU's compile time is most of
# the suite's; LLVM's optimisation level 0 cuts it by about 40%. It changes how fast the
# machine code runs, not what it computes. Runs and benchmarks keep the default level.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
DEFAULT_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")  # for a test whose running time outweighs compiling
os.environ["XLA_FLAGS"] = f"{DEFAULT_XLA_FLAGS} {TEST_XLA_FLAGS}".strip()


# The smallest model the loop tests train, and a whole ARES run of the built-in task around it
# (one round); each test file adds what it needs (later keys win).
TINY_MODEL = ["model.d_model=32", "model.d_ff=64", "model.num_layers=1", "model.num_decoder_layers=1"]
TINY_SHAPES_RUN = [
    "data.shapes.train_size=64",
    "data.shapes.gold_share=1.0",  # every training problem with its gold rationale (the default: 3 in 4)
    "data.shapes.test_size=12",
    "data.shapes.val_size=8",
    "data.vocab_size=400",
    *TINY_MODEL,
    "model.max_target_length=24",
    "eval.batch_size=8",
    "eval.max_new_tokens=24",
    "rationale.warmup_steps=1",
    "rationale.batch_size=8",
    "answer.steps=3",
    "answer.warmup_steps=1",
    "answer.batch_size=8",
    "rounds=1",
    "rl.prompts_per_rollout=8",
    "rl.k_samples=2",
    "rl.minibatch_size=8",
    "correction.questions=16",
    "correction.steps=4",
    "correction.warmup_steps=1",
    "correction.batch_size=8",
]


def stopped_at_start_up(tmp_path, capsys, *settings: str) -> str:
    """A tiny ARES run with `settings` that must stop at start-up with a bad configuration (exit 2)
    before writing a checkpoint; returns what it wrote to stderr."""
    from ares_jax.main import main

    args = [f"workdir={tmp_path / 'run'}", *TINY_SHAPES_RUN, "rationale.steps=6", *settings]
    assert main(args) == 2
    assert not (tmp_path / "run" / "checkpoints").exists()
    return capsys.readouterr().err


@pytest.fixture
def sft_rows_seen(monkeypatch):
    """Filled as a run in the test trains: per SFT step, how many examples its batch was drawn from."""
    from ares_jax.loop import phases

    rows = []
    real_batch_at = phases.batch_at

    def recording_batch_at(arrays, batch_size, seed, step):
        rows.append(len(arrays["input_ids"]))
        return real_batch_at(arrays, batch_size, seed, step)

    monkeypatch.setattr(phases, "batch_at", recording_batch_at)
    return rows


# `make test` spreads whole test files over `TEST_WORKERS` processes (pytest-xdist, `--dist
# loadfile --no-loadscope-reorder`: files handed out in collection order); these take a minute or
# more each and go first, so that none of them is left to run alone at the end.
LONG_FILES_FIRST = (
    "test_loop.py",
    "test_multihost_loop.py",
    "test_parallel.py",
    "test_sft.py",
    "test_loop_scienceqa.py",
    "test_reproduce.py",
    "test_step_report.py",
    "test_keep_best.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its order


def xla_flags(*flags: str) -> str:
    """XLA_FLAGS for a test's subprocess: this session's flags plus `flags`."""
    return " ".join([os.environ["XLA_FLAGS"], *flags])


def run_python_for_json(args: list[str], env: dict, timeout: int):
    """Runs `python *args` in a fresh process and returns the JSON object its last stdout line holds."""
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@functools.cache
def jit_apply(model):
    """`model.apply`, jitted (one per model definition). Run eagerly, a pass compiles each of its
    primitives on its own, which costs a test far more than compiling the whole pass once."""
    import jax

    return jax.jit(model.apply, static_argnames=("deterministic",))


@pytest.fixture
def server():
    """A local HTTP server speaking the OpenAI and Anthropic APIs as a well-behaved Teacher
    (every sentence 1.0, nothing to correct, A is better); tests script other replies."""
    from fake_api_server import FakeAPIServer, all_ones

    s = FakeAPIServer()
    s.default = all_ones
    yield s
    s.close()


def free_port() -> str:
    """A TCP port on 127.0.0.1 nothing listens on (for a jax.distributed coordinator)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def png(value: int, size=(6, 5)) -> bytes:
    """A small PNG whose pixels depend on `value` (test images)."""
    pixels = (np.arange(size[0] * size[1] * 3).reshape(size[0], size[1], 3) * 7 + value) % 256
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def sqa(tmp_path) -> Path:
    """The ScienceQA fixture in the official layout: data/scienceqa/{problems,pid_splits}.json,
    data/captions.json, images/<split>/<qid>/image.png, vision_features/{detr.npy,name_map.json}."""
    root = tmp_path / "data"
    shutil.copytree(Path(__file__).parent / "fixtures" / "scienceqa", root / "scienceqa")
    shutil.move(root / "scienceqa" / "captions.json", root / "captions.json")
    for split, qid in [("train", "1"), ("test", "4")]:
        folder = tmp_path / "images" / split / qid
        folder.mkdir(parents=True)
        (folder / "image.png").write_bytes(png(int(qid)))
    features = tmp_path / "vision_features"
    features.mkdir()
    np.save(features / "detr.npy", np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4))
    (features / "name_map.json").write_text(json.dumps({"1": "0", "4": "1"}))
    return tmp_path


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory):
    """A finished baseline-only run (rounds=0) whose answer model has LoRA adapters (export and
    predict read it)."""
    from ares_jax.main import main

    workdir = tmp_path_factory.mktemp("lora_run")
    args = [f"workdir={workdir}", *TINY_SHAPES_RUN, "rounds=0", "rationale.steps=6", "answer.lora.enabled=true"]
    assert main(args) == 0
    return workdir
