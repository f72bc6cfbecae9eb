"""API backends: one request in, one reply out, errors sorted into retryable or not.

Both SDK clients are made with `max_retries=0`: the service (`service.py`) does the retries,
so the two do not multiply. Keys are read from the environment only, when the backend is made.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from typing import Sequence

from ares_jax.teacher.prompts import Request


class TeacherSetupError(ValueError):
    """The Teacher cannot be used as configured (e.g. its API key variable is not set)."""


class TeacherRequestError(RuntimeError):
    """A request failed. `retryable` for 429, 5xx, timeouts and lost connections."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclasses.dataclass(frozen=True)
class Reply:
    text: str
    tokens_in: int
    tokens_out: int


def api_key_from_env(variable: str) -> str:
    key = os.environ.get(variable, "").strip()
    if not key:
        raise TeacherSetupError(
            f"the Teacher's API key is read from the environment variable {variable}, which is not set "
            f"(export {variable}=... or choose another with teacher.api_key_env)"
        )
    return key


def _retry_after(headers) -> float | None:
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                return None
    return None


def _classify(error: Exception, sdk, key: str) -> TeacherRequestError:
    """Our error for an SDK exception; the key is cut out of any message that might echo it."""
    message = f"{type(error).__name__}: {error}".replace(key, "[key]")
    if isinstance(error, (sdk.APITimeoutError, sdk.APIConnectionError)):
        return TeacherRequestError(message, retryable=True)
    if isinstance(error, sdk.APIStatusError):
        status = error.status_code
        retryable = status == 429 or status >= 500 or status in (408, 409)
        headers = getattr(error.response, "headers", None)
        return TeacherRequestError(f"HTTP {status}: {message}", retryable, _retry_after(headers))
    return TeacherRequestError(message, retryable=False)


History = Sequence[tuple[str, str]]  # (role "assistant" | "user", text) turns after the request


class OpenAIBackend:
    """Chat completions through the `openai` SDK; `base_url` points it at any OpenAI-compatible
    server (vLLM, Ollama, llama.cpp server). Images go as `image_url` data URLs."""

    name = "openai"

    def __init__(
        self, model: str, api_key_env: str = "OPENAI_API_KEY", base_url: str | None = None, timeout_s: float = 60.0
    ):
        import openai

        self.model = model
        self._sdk = openai
        self._key = api_key_from_env(api_key_env)
        self._client = openai.AsyncOpenAI(api_key=self._key, base_url=base_url, timeout=timeout_s, max_retries=0)

    async def complete(self, request: Request, history: History = ()) -> Reply:
        content: list[dict] = [{"type": "text", "text": request.text}]
        if request.image_png:
            url = "data:image/png;base64," + base64.b64encode(request.image_png).decode()
            content.append({"type": "image_url", "image_url": {"url": url}})
        messages = [{"role": "system", "content": request.system}, {"role": "user", "content": content}]
        messages += [{"role": role, "content": text} for role, text in history]
        try:
            response = await self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=0.0, max_tokens=request.max_tokens
            )
        except self._sdk.OpenAIError as error:
            raise _classify(error, self._sdk, self._key) from None
        usage = response.usage
        text = (response.choices[0].message.content or "") if response.choices else ""
        return Reply(text, getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)


class AnthropicBackend:
    """The messages API through the `anthropic` SDK (the paper used claude-3-haiku). Images go
    as base64 `image` blocks before the text."""

    name = "anthropic"

    def __init__(
        self, model: str, api_key_env: str = "ANTHROPIC_API_KEY", base_url: str | None = None, timeout_s: float = 60.0
    ):
        import anthropic

        self.model = model
        self._sdk = anthropic
        self._key = api_key_from_env(api_key_env)
        self._client = anthropic.AsyncAnthropic(api_key=self._key, base_url=base_url, timeout=timeout_s, max_retries=0)

    async def complete(self, request: Request, history: History = ()) -> Reply:
        content: list[dict] = []
        if request.image_png:
            data = base64.b64encode(request.image_png).decode()
            content.append({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}})
        content.append({"type": "text", "text": request.text})
        messages = [{"role": "user", "content": content}]
        messages += [{"role": role, "content": text} for role, text in history]
        try:
            # anthropic 2.x's `create` has no `temperature` argument; the API still takes it.
            response = await self._client.messages.create(
                model=self.model,
                system=request.system,
                messages=messages,
                max_tokens=request.max_tokens,
                extra_body={"temperature": 0.0},
            )
        except self._sdk.AnthropicError as error:
            raise _classify(error, self._sdk, self._key) from None
        text = "".join(getattr(block, "text", "") for block in response.content)
        usage = response.usage
        return Reply(text, getattr(usage, "input_tokens", 0) or 0, getattr(usage, "output_tokens", 0) or 0)
