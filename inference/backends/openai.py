"""Generation through an OpenAI-compatible HTTP server: vLLM first, also SGLang and `transformers serve`.

Instruct checkpoints call `POST /v1/chat/completions` with the conversation as `messages` (the server
applies its chat template); base checkpoints call `POST /v1/completions` with the prompt the project's
completion template renders. Each sample is one request (`n=1`) carrying its own `seed`, so a response
depends on its request alone, as far as the server honours seeds (vLLM does; `transformers serve` seeds
torch's global generator, which concurrent requests share).

`api_base_url` is the server's root, e.g. `http://gpu-01:8000`; a URL ending in `/v1` (as the OpenAI
SDKs expect it) is accepted and that suffix dropped, so both spellings reach the same endpoints. A path
before `/v1` is kept, for servers behind a gateway (`https://gateway/llm/v1`).

Errors are sorted by whether a retry can help. `BackendUnavailable` (refused or reset connection,
timeout, HTTP 5xx, 408, 429, a vLLM `abort`) is transient; `CheckpointError` (any other HTTP 4xx, such
as an unknown model name or a rejected API key, or a response that is not an OpenAI completion) is
permanent and carries the server's message. Neither ever contains the API key.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from feedback.prompting import completion_prompt_render
from feedback.sampling import SamplingParameters
from inference.backends.base import (
    CheckpointError,
    CheckpointSpec,
    FinishReason,
    GeneratedText,
    GenerationRequest,
)

DEFAULT_CONCURRENCY = 16
# Seconds to wait for a response. Generous: a busy server queues requests before it decodes them.
DEFAULT_TIMEOUT_SECONDS = 600.0
CONNECT_TIMEOUT_SECONDS = 10.0
SERVER_MESSAGE_MAX_CHARS = 500
# 4xx answers that mean "not now" rather than "never": request timeout and rate limiting.
TRANSIENT_CLIENT_STATUSES = frozenset({408, 429})


class BackendUnavailable(Exception):
    """The generation server could not answer now (unreachable, timed out, overloaded, failing with 5xx).
    Transient: the same request may succeed later, so callers retry with backoff."""


class OpenAICompatibleBackend:
    """Samples from a model served elsewhere over the OpenAI HTTP API, `concurrency` requests at a time.

    Holds no model, only an `httpx.Client` (thread-safe, pooled connections), so loading is instant and
    contacts nothing: a misconfiguration (unknown model, bad key) surfaces on the first request.
    """

    def __init__(
        self,
        spec: CheckpointSpec,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.spec = spec
        self.concurrency = concurrency
        self.model_name = spec.served_model_name or spec.source
        self._is_chat = spec.kind == "instruct"
        self.base_url = normalise_base_url(spec.api_base_url, checkpoint_name=spec.name)
        self._api_key = _api_key(spec)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds, connect=CONNECT_TIMEOUT_SECONDS),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingParameters,
        *,
        completion_template: str,
    ) -> Iterator[list[GeneratedText]]:
        """Yield results in request order, one list per `concurrency` requests.

        Every request is submitted at once to a pool of `concurrency` threads, so the server always has
        that many in flight while the caller stores a finished batch. The first failure is raised when
        its batch is reached; requests not yet sent are then cancelled, those in flight finish unread.
        Prompts are rendered before anything is sent, so a template error costs no server time.
        """
        if not requests:
            return
        path = "/v1/chat/completions" if self._is_chat else "/v1/completions"
        bodies = [self._body(request, sampling, completion_template) for request in requests]
        executor = ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(requests)), thread_name_prefix="rankwise-openai"
        )
        try:
            futures = [
                executor.submit(self._generate_one, request.key, path, body, sampling)
                for request, body in zip(requests, bodies, strict=True)
            ]
            for start in range(0, len(futures), self.concurrency):
                yield [future.result() for future in futures[start : start + self.concurrency]]
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._client.close()

    def _body(
        self, request: GenerationRequest, sampling: SamplingParameters, completion_template: str
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "n": 1,
            "seed": request.seed,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
        }
        if sampling.stop_strings:
            body["stop"] = list(sampling.stop_strings)
        # Not in the OpenAI schema: vLLM and SGLang accept them as extra fields; servers that do not
        # (`transformers serve` answers 422) fail loudly rather than silently sample differently.
        if sampling.top_k != 0:
            body["top_k"] = sampling.top_k
        if sampling.repetition_penalty != 1:
            body["repetition_penalty"] = sampling.repetition_penalty
        if self._is_chat:
            body["messages"] = [dict(message) for message in request.conversation]
        else:
            body["prompt"] = completion_prompt_render(
                template=completion_template, conversation=request.conversation
            )
        return body

    def _generate_one(
        self, key: Any, path: str, body: dict[str, Any], sampling: SamplingParameters
    ) -> GeneratedText:
        started = time.perf_counter()
        try:
            response = self._client.post(path, json=body)
        except httpx.TimeoutException as error:
            raise BackendUnavailable(
                f"The generation server at {self._display_url} did not answer POST {path} in time "
                f"({type(error).__name__})."
            ) from error
        except httpx.RequestError as error:  # refused, reset, protocol or decoding failure
            raise BackendUnavailable(
                f"Cannot reach the generation server at {self._display_url}: {error}"
            ) from error
        latency = time.perf_counter() - started
        self._raise_for_status(response, path)
        text, server_reason, stop_reason, completion_tokens = self._parse(response, path)
        if server_reason not in ("stop", "length"):
            self._raise_for_finish_reason(server_reason, path)
        text, finish_reason = finish_reason_for(text, server_reason, stop_reason, sampling.stop_strings)
        return GeneratedText(
            key=key,
            text=text,
            token_count=token_count_for(completion_tokens, finish_reason),
            finish_reason=finish_reason,
            latency_seconds=latency,
        )

    @property
    def _display_url(self) -> str:
        """The base URL without any user:password part, for messages."""
        return str(httpx.URL(self.base_url).copy_with(username=None, password=None))

    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        status = response.status_code
        if status < 400:
            return
        message = self._server_message(response)
        where = f"POST {path} at {self._display_url} (model {self.model_name!r})"
        if status >= 500 or status in TRANSIENT_CLIENT_STATUSES:
            raise BackendUnavailable(f"{where} failed with HTTP {status}: {message}")
        raise CheckpointError(
            f"The generation server refused {where} with HTTP {status}: {message}. Check the "
            "checkpoint's API base URL, served model name and API key."
        )

    def _raise_for_finish_reason(self, server_reason: Any, path: str) -> None:
        where = f"POST {path} at {self._display_url} (model {self.model_name!r})"
        if server_reason == "abort":  # vLLM: the engine dropped the request (shutdown, preemption).
            raise BackendUnavailable(f"{where} was aborted by the server.")
        raise CheckpointError(
            f"{where} ended with finish_reason {server_reason!r}, which is not a text ending."
        )

    def _parse(self, response: httpx.Response, path: str) -> tuple[str, Any, Any, Any]:
        """(text, finish_reason, stop_reason, usage.completion_tokens) of a 2xx response."""
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] if self._is_chat else choice["text"]
            usage = data.get("usage") or {}
            completion_tokens = usage.get("completion_tokens")
            server_reason = choice.get("finish_reason")
            stop_reason = choice.get("stop_reason")  # vLLM: the matched stop string or stop token id.
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise CheckpointError(
                f"The server at {self._display_url} answered POST {path} with something that is not an "
                f"OpenAI completion: {self._truncate(response.text)}"
            ) from None
        # A chat message may carry no content (a refusal or a tool call): nothing was written.
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise CheckpointError(f"The server at {self._display_url} returned a non-text completion.")
        return text, server_reason, stop_reason, completion_tokens

    def _server_message(self, response: httpx.Response) -> str:
        """The error text of an error response: OpenAI/vLLM `{"error": {"message"}}`, FastAPI `{"detail"}`."""
        try:
            data = response.json()
        except ValueError:
            return self._truncate(response.text)
        message: Any = data
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict) and error.get("message"):
                message = error["message"]
            elif error:
                message = error
            elif data.get("detail"):
                message = data["detail"]
            elif data.get("message"):
                message = data["message"]
        return self._truncate(message if isinstance(message, str) else json.dumps(message))

    def _truncate(self, text: str) -> str:
        text = " ".join(text.split())
        if self._api_key:
            # Some servers quote the credential they rejected.
            text = text.replace(self._api_key, "[API key]")
        if len(text) > SERVER_MESSAGE_MAX_CHARS:
            text = text[: SERVER_MESSAGE_MAX_CHARS - 1] + "…"
        return text or "(empty response)"


def normalise_base_url(url: str, *, checkpoint_name: str) -> str:
    """The server root: whitespace, trailing slashes and one trailing `/v1` removed."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise CheckpointError(
            f"The checkpoint {checkpoint_name} needs an API base URL such as http://host:8000 "
            "(http or https, with a host)."
        )
    return url


def _api_key(spec: CheckpointSpec) -> str:
    if not spec.api_key_env:
        return ""
    key = os.environ.get(spec.api_key_env, "")
    if not key:
        raise CheckpointError(
            f"The checkpoint {spec.name} reads its API key from the environment variable "
            f"{spec.api_key_env}, which is not set (or empty) on this worker."
        )
    return key


def finish_reason_for(
    text: str, server_reason: Any, stop_reason: Any, stop_strings: Sequence[str]
) -> tuple[str, FinishReason]:
    """The kept text and Rankwise's finish reason for one OpenAI choice.

    vLLM cuts a matched stop string off and names it in `stop_reason`. Servers that stop on it but keep
    it (`transformers serve`), or ignore `stop`, leave it in the text: the text is cut at the first
    occurrence of any stop string, and that counts as a stop whatever the server said. Otherwise "stop"
    means the model ended its turn ("eos"), "length" that `max_tokens` ran out.
    """
    cuts = [text.find(stop) for stop in stop_strings if stop in text]
    if cuts:
        return text[: min(cuts)], "stop"
    if server_reason == "length":
        return text, "length"
    if isinstance(stop_reason, str) and stop_reason in stop_strings:
        return text, "stop"
    return text, "eos"


def token_count_for(completion_tokens: Any, finish_reason: FinishReason) -> int:
    """Generated tokens without the end-of-sequence token, from the server's `usage.completion_tokens`.

    vLLM and `transformers serve` count the end token that finished the turn, so "eos" drops one. On a
    stop string the count includes the tokens that spelled it (servers do not say how many there were).
    A server that reports no usage gives 0: Rankwise holds no tokenizer for a served model to count with.
    """
    if not isinstance(completion_tokens, int) or isinstance(completion_tokens, bool) or completion_tokens < 0:
        return 0
    if finish_reason == "eos" and completion_tokens > 0:
        return completion_tokens - 1
    return completion_tokens
