import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # test helpers such as fake_api_server

# One on-disk compilation cache for this test session, inherited by the runs the tests start as
# subprocesses: a resumed run then reuses what the first run compiled instead of compiling again.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="ares_jax_test_xla_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
