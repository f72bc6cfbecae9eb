"""The host loop of ARES: phases, checkpoints and resume, the report (`run`)."""

from ares_jax.loop.run import plan, run
from ares_jax.loop.state import Preempted
