"""Builds the configured Teacher; every setup error (missing key, bad backend) surfaces here,
before any training."""

from __future__ import annotations

from pathlib import Path

from ares_jax.config import TeacherConfig
from ares_jax.teacher.backends import AnthropicBackend, OpenAIBackend
from ares_jax.teacher.base import Teacher
from ares_jax.teacher.cache import TeacherCache
from ares_jax.teacher.cached import CachedTeacher
from ares_jax.teacher.rule import RuleTeacher
from ares_jax.teacher.service import APITeacher

_DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def make_teacher(config: TeacherConfig, cache_path: str | Path) -> Teacher:
    """The Teacher `config` names, its answers cached in the SQLite file `cache_path`."""
    if config.backend == "rule":
        return CachedTeacher(RuleTeacher(config.rule_listing_credit), TeacherCache(cache_path))
    backend_class = OpenAIBackend if config.backend == "openai" else AnthropicBackend
    backend = backend_class(
        config.model, config.api_key_env or _DEFAULT_KEY_ENV[config.backend], config.base_url or None, config.timeout_s
    )
    return APITeacher(backend, TeacherCache(cache_path), config)
