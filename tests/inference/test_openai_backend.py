"""The OpenAI-compatible backend against a real `transformers serve` process serving tiny checkpoints.

`transformers serve` samples only when the checkpoint's generation config says `do_sample: true` (it
never sets it from `temperature`); the tiny checkpoint says so, as released instruct checkpoints do. It
seeds torch's global generator per request, so seeds reproduce only one request at a time: the seed
tests run with `concurrency=1`. It has no authentication, so the API key tests talk to a small stdlib
HTTP server that checks a key.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from feedback.models import DEFAULT_COMPLETION_TEMPLATE
from feedback.sampling import SamplingParameters
from inference.backends.base import CheckpointError, CheckpointSpec, GeneratedText, GenerationRequest
from inference.backends.openai import (
    BackendUnavailable,
    OpenAICompatibleBackend,
    finish_reason_for,
    normalise_base_url,
    token_count_for,
)
from inference.tiny import build_tiny_checkpoint

pytestmark = pytest.mark.slow

SERVER_START_TIMEOUT_SECONDS = 120
API_KEY_VARIABLE = "RANKWISE_TEST_OPENAI_API_KEY"
SECRET_KEY = "sk-test-0123456789abcdef"
CONVERSATIONS = [
    [{"role": "user", "content": "Name three rivers."}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is a comparison?"},
    ],
    [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Tell me a fact."},
    ],
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    paths = {kind: build_tiny_checkpoint(root / kind, kind=kind) for kind in ("instruct", "base")}
    for path in paths.values():
        assert json.loads((path / "generation_config.json").read_text())["do_sample"] is True
    return paths


@pytest.fixture(scope="module")
def server_url(tmp_path_factory) -> Iterator[str]:
    """A `transformers serve` process on loopback, offline, loading models on first request."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [str(Path(sys.executable).parent / "transformers"), "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--device", "cpu"]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"transformers serve exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve was not healthy in time:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _spec(*, kind: str, source: str, api_base_url: str, api_key_env: str = "") -> CheckpointSpec:
    return CheckpointSpec(
        checkpoint_id=1,
        name=f"tiny-{kind}",
        kind=kind,  # type: ignore[arg-type]
        source_type="local",
        source=source,
        backend="openai",
        api_base_url=api_base_url,
        api_key_env=api_key_env,
    )


@pytest.fixture
def make_backend() -> Iterator:
    backends: list[OpenAICompatibleBackend] = []

    def make(spec: CheckpointSpec, **options) -> OpenAICompatibleBackend:
        backend = OpenAICompatibleBackend(spec, **options)
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        backend.close()


def _requests(count: int, *, seed: int = 0) -> list[GenerationRequest]:
    return [
        GenerationRequest(key=(index, seed), conversation=CONVERSATIONS[index % 3], seed=seed + index)
        for index in range(count)
    ]


def _generate(backend, requests, sampling) -> list[GeneratedText]:
    return [
        result
        for batch in backend.generate(requests, sampling, completion_template=DEFAULT_COMPLETION_TEMPLATE)
        for result in batch
    ]


@pytest.mark.parametrize("kind", ["instruct", "base"])
def test_generate_returns_one_result_per_request_in_batches(kind, checkpoints, server_url, make_backend):
    backend = make_backend(
        _spec(kind=kind, source=str(checkpoints[kind]), api_base_url=server_url), concurrency=2
    )
    requests = _requests(3)
    sampling = SamplingParameters(temperature=1.0, max_new_tokens=16)

    batches = list(backend.generate(requests, sampling, completion_template=DEFAULT_COMPLETION_TEMPLATE))

    assert [len(batch) for batch in batches] == [2, 1]
    results = [result for batch in batches for result in batch]
    assert [result.key for result in results] == [request.key for request in requests]
    for result in results:
        assert isinstance(result.text, str)
        assert result.finish_reason in ("eos", "length", "stop")
        assert 0 <= result.token_count <= 16
        assert result.latency_seconds > 0


@pytest.mark.parametrize("kind", ["instruct", "base"])
def test_max_tokens_ends_with_length(kind, checkpoints, server_url, make_backend):
    # Greedy: the tiny models' argmax never picks the end token, so each response runs out of tokens.
    backend = make_backend(_spec(kind=kind, source=str(checkpoints[kind]), api_base_url=server_url))
    sampling = SamplingParameters(temperature=0, max_new_tokens=3)

    results = _generate(backend, _requests(2), sampling)

    assert [(result.finish_reason, result.token_count) for result in results] == [("length", 3)] * 2


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_base_url_may_end_in_v1(suffix, checkpoints, server_url, make_backend):
    spec = _spec(kind="instruct", source=str(checkpoints["instruct"]), api_base_url=server_url + suffix)
    backend = make_backend(spec)

    results = _generate(backend, _requests(1), SamplingParameters(temperature=0, max_new_tokens=2))

    assert backend.base_url == server_url
    assert [result.token_count for result in results] == [2]


def test_seed_fixes_the_sample(checkpoints, server_url, make_backend):
    # One request at a time: `transformers serve` seeds a generator that concurrent requests share.
    spec = _spec(kind="instruct", source=str(checkpoints["instruct"]), api_base_url=server_url)
    backend = make_backend(spec, concurrency=1)
    conversation = CONVERSATIONS[0]
    requests = [
        GenerationRequest(key=index, conversation=conversation, seed=seed)
        for index, seed in enumerate([7, 8, 7])
    ]

    texts = [
        result.text
        for result in _generate(backend, requests, SamplingParameters(temperature=1.0, max_new_tokens=24))
    ]

    assert texts[0] == texts[2]
    assert texts[0] != texts[1]


def test_stop_string_ends_the_response_and_is_cut(checkpoints, server_url, make_backend):
    spec = _spec(kind="instruct", source=str(checkpoints["instruct"]), api_base_url=server_url)
    backend = make_backend(spec, concurrency=1)
    requests = [GenerationRequest(key="only", conversation=CONVERSATIONS[0], seed=11)]
    [unstopped] = _generate(backend, requests, SamplingParameters(temperature=1.0, max_new_tokens=32))
    # A letter the seeded sample writes after its first character; stopping on it must keep what precedes.
    stop = next(
        char
        for char in unstopped.text[1:]
        if char.isascii() and char.isalnum() and unstopped.text.index(char) > 0
    )

    [stopped] = _generate(
        backend, requests, SamplingParameters(temperature=1.0, max_new_tokens=32, stop_strings=(stop,))
    )

    assert stopped.finish_reason == "stop"
    assert stopped.text == unstopped.text[: unstopped.text.index(stop)]
    assert stop not in stopped.text


@pytest.mark.parametrize(
    ("extra", "field"), [({"top_k": 5}, "top_k"), ({"repetition_penalty": 1.2}, "repetition_penalty")]
)
def test_sampling_field_the_server_rejects_is_a_checkpoint_error(
    extra, field, checkpoints, server_url, make_backend
):
    # vLLM and SGLang take these; `transformers serve` answers 422, which no retry can fix.
    spec = _spec(kind="instruct", source=str(checkpoints["instruct"]), api_base_url=server_url)
    backend = make_backend(spec)

    with pytest.raises(
        CheckpointError, match=rf"HTTP 422: Unexpected fields in the request: \{{'{field}'\}}"
    ):
        _generate(backend, _requests(1), SamplingParameters(max_new_tokens=2, **extra))


def test_unknown_model_is_reported_as_the_server_answers(server_url, make_backend, tmp_path):
    # `transformers serve` fails to load an unknown model with HTTP 500, which reads as transient;
    # vLLM answers 404, a CheckpointError like the 401 in test_api_key_is_sent_as_bearer_and_never_echoed.
    spec = _spec(kind="instruct", source=str(tmp_path / "missing"), api_base_url=server_url)
    backend = make_backend(spec)

    with pytest.raises(BackendUnavailable, match="failed with HTTP 500"):
        _generate(backend, _requests(1), SamplingParameters(max_new_tokens=2))


def test_nothing_listening_is_backend_unavailable(monkeypatch, make_backend):
    monkeypatch.setenv(API_KEY_VARIABLE, SECRET_KEY)
    spec = _spec(
        kind="instruct",
        source="any",
        api_base_url=f"http://127.0.0.1:{_free_port()}",
        api_key_env=API_KEY_VARIABLE,
    )
    backend = make_backend(spec)

    with pytest.raises(
        BackendUnavailable, match=r"Cannot reach the generation server at http://127\.0\.0\.1:"
    ) as caught:
        _generate(backend, _requests(2), SamplingParameters(max_new_tokens=2))

    assert SECRET_KEY not in str(caught.value)


@pytest.mark.parametrize("value", [None, ""])
def test_unset_api_key_variable_is_a_checkpoint_error(value, monkeypatch):
    if value is None:
        monkeypatch.delenv(API_KEY_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(API_KEY_VARIABLE, value)
    spec = _spec(
        kind="instruct", source="any", api_base_url="http://127.0.0.1:1", api_key_env=API_KEY_VARIABLE
    )

    with pytest.raises(CheckpointError, match=f"environment variable {API_KEY_VARIABLE}, which is not set"):
        OpenAICompatibleBackend(spec)


class _AuthenticatingServer(BaseHTTPRequestHandler):
    """A server with a key, like vLLM started with `--api-key`: 401 for any other key, quoting the key it
    got (as some gateways do) so the test sees it redacted; records the Authorization headers it got."""

    received_authorizations: list[str] = []
    expected_key = "sk-the-right-key"

    def do_POST(self) -> None:
        authorization = self.headers.get("Authorization", "")
        self.received_authorizations.append(authorization)
        self.rfile.read(int(self.headers["Content-Length"]))
        if authorization == f"Bearer {self.expected_key}":
            status, body = (
                200,
                {
                    "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
                    "usage": {"completion_tokens": 2},
                },
            )
        else:
            status, body = (
                401,
                {"error": {"message": f"Invalid key {authorization.removeprefix('Bearer ')}", "code": 401}},
            )
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def authenticating_server_url() -> Iterator[str]:
    _AuthenticatingServer.received_authorizations = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AuthenticatingServer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _authenticated_backend(make_backend, monkeypatch, url: str, key: str) -> OpenAICompatibleBackend:
    monkeypatch.setenv(API_KEY_VARIABLE, key)
    spec = _spec(kind="instruct", source="served", api_base_url=url, api_key_env=API_KEY_VARIABLE)
    return make_backend(spec)


def test_api_key_is_sent_as_bearer(authenticating_server_url, monkeypatch, make_backend):
    backend = _authenticated_backend(make_backend, monkeypatch, authenticating_server_url, "sk-the-right-key")

    [result] = _generate(backend, _requests(1), SamplingParameters(max_new_tokens=4))

    assert _AuthenticatingServer.received_authorizations == ["Bearer sk-the-right-key"]
    # The server ended the turn ("stop" without a stop string) and counted the end token.
    assert (result.text, result.finish_reason, result.token_count) == ("ok", "eos", 1)


def test_rejected_api_key_is_a_checkpoint_error_without_the_key(
    authenticating_server_url, monkeypatch, make_backend
):
    backend = _authenticated_backend(make_backend, monkeypatch, authenticating_server_url, SECRET_KEY)

    with pytest.raises(CheckpointError, match=r"HTTP 401: Invalid key \[API key\]\.") as caught:
        _generate(backend, _requests(1), SamplingParameters(max_new_tokens=4))

    assert _AuthenticatingServer.received_authorizations == [f"Bearer {SECRET_KEY}"]
    assert SECRET_KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "server_reason", "stop_reason", "stop_strings", "expected"),
    [
        # vLLM: the stop string is already cut off and named in stop_reason.
        ("Paris", "stop", "\n\n", ("\n\n",), ("Paris", "stop")),
        # vLLM: an end token (None) or a stop token id from the generation config (int).
        ("Paris", "stop", None, ("\n\n",), ("Paris", "eos")),
        ("Paris", "stop", 128009, (), ("Paris", "eos")),
        # transformers serve: the stop string and the rest of its token stay in the text.
        ("Paris.\n\nBerlin", "stop", None, ("\n\n", "Ber"), ("Paris.", "stop")),
        # A stop string in the last token while max_tokens ran out is still a stop.
        ("Paris\n\n", "length", None, ("\n\n",), ("Paris", "stop")),
        ("Paris", "length", None, ("\n\n",), ("Paris", "length")),
    ],
)
def test_finish_reason_for(text, server_reason, stop_reason, stop_strings, expected):
    assert finish_reason_for(text, server_reason, stop_reason, stop_strings) == expected


@pytest.mark.parametrize(
    ("completion_tokens", "finish_reason", "expected"),
    [(5, "eos", 4), (0, "eos", 0), (5, "length", 5), (5, "stop", 5), (None, "length", 0), (True, "eos", 0)],
)
def test_token_count_for(completion_tokens, finish_reason, expected):
    assert token_count_for(completion_tokens, finish_reason) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://gpu-01:8000", "http://gpu-01:8000"),
        (" http://gpu-01:8000/v1/ ", "http://gpu-01:8000"),
        ("https://gateway.example/llm/v1", "https://gateway.example/llm"),
    ],
)
def test_normalise_base_url(url, expected):
    assert normalise_base_url(url, checkpoint_name="tiny") == expected


@pytest.mark.parametrize("url", ["", "gpu-01:8000", "ftp://gpu-01/v1", "http:///v1"])
def test_unusable_base_url_is_a_checkpoint_error(url):
    with pytest.raises(CheckpointError, match="needs an API base URL"):
        normalise_base_url(url, checkpoint_name="tiny")
