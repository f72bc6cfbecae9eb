import os

# Tests run on CPU with two threads, like CI; keep XLA from grabbing more than it needs.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
