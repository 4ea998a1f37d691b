"""``qwen3-rag serve``'s admission, limits, keys and shutdown: each refusal gets its
documented status, and no request is lost or computed for nobody.

The model thread of a server can be held busy (``hold_engine``): requests then queue as they
would behind a long call, deterministically."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from qwen3_core import Qwen3Embedder, Qwen3Reranker
from qwen3_core.cli.main import main
from qwen3_core.serve import ServeSettings, create_app
from qwen3_core.testing import free_port
from tests.serving import RunningServer

QUERY = "What is the capital of China?"
KEY = "sk-test-0123456789abcdef"
EMBED = {"texts": ["a"], "input_type": "search_document"}
# A served name a request could not send, and the start of the refusal's reason.
SERVED_NAME_PROBLEMS = [
    ("", "must be a non-empty name"),
    (" ", "must be a non-empty name"),
    ("embed:query", "'embed:query' may not end in ':query'"),
    ("embed:document", "'embed:document' may not end in ':query' or ':document'"),
]


@contextmanager
def hold_engine(server: RunningServer) -> Iterator[threading.Event]:
    """The server's engine kept busy until the event is set (or the block ends): as a long
    call would, it holds the engine lock the model calls take."""
    service = server.app.state.service
    release = threading.Event()
    held = threading.Event()

    async def busy() -> None:
        async with service.engine:
            held.set()
            await asyncio.to_thread(release.wait, 30)

    done = asyncio.run_coroutine_threadsafe(busy(), service.loop)
    assert held.wait(5)
    try:
        yield release
    finally:
        release.set()
        done.result(10)


def wait_for(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting for the server"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def server(embedder: Qwen3Embedder, reranker: Qwen3Reranker) -> Iterator[RunningServer]:
    settings = ServeSettings(
        max_documents=50, max_request_bytes=20_000, max_concurrent_requests=250
    )
    with RunningServer(create_app(embedder, reranker, settings=settings)) as running:
        yield running


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/v2/rerank", b"{not json", 422, "invalid request body"),
        ("/v2/rerank", {"query": QUERY}, 422, "documents: Field required"),
        ("/v2/rerank", {"query": QUERY, "documents": "one text"}, 422, "documents"),
        ("/v2/rerank", {"query": QUERY, "documents": ["a"], "top_n": -1}, 422, "top_n"),
        ("/v2/rerank", {"query": 5, "documents": ["a"]}, 422, "query"),
        ("/v2/rerank", b'{"query": "\\ud800", "documents": ["a"]}', 400, "query"),
        ("/v1/embeddings", {"input": [1.5]}, 422, "input"),
        ("/v1/embeddings", {"input": ["a"], "dimensions": 100000}, 400, "dimensions=100000"),
        ("/v1/embeddings", {"input": [[1, 2, 10**9]]}, 400, "token ids outside"),
        ("/v1/embeddings", {"input": ["a"], "encoding_format": "int8"}, 422, "encoding_format"),
        ("/v2/embed", {"texts": ["a"]}, 422, "input_type"),
        ("/embed", {"inputs": ["a"], "prompt_name": "passage"}, 400, "prompt_name"),
        ("/classify", {"input": [[]]}, 400, "0 tokens"),
        ("/rerank", {"query": QUERY, "texts": ["a"], "long_documents": "split"}, 422, "long_doc"),
        ("/v2/embed", {**EMBED, "embedding_types": ["int8"]}, 422, "'int8' not supported"),
        ("/v2/embed", {**EMBED, "embedding_types": []}, 422, "embedding_types: empty"),
        ("/v2/embed", {**EMBED, "truncate": "START"}, 422, '"START"'),
        ("/v2/embed", {**EMBED, "model": "embed-v4.0"}, 404, "'embed-v4.0' is not served"),
        ("/v2/rerank", {"query": QUERY, "documents": ["a"], "truncate": "START"}, 422, "START"),
        ("/embed", {"inputs": ["a"], "truncation_direction": "left"}, 422, '"left"'),
        ("/rerank", {"query": QUERY, "texts": ["a"], "truncation_direction": "Left"}, 422, "Left"),
        ("/v2/rerank", {"query": QUERY, "documents": ["a"], "model": "x"}, 404, "'x' is not"),
        ("/classify", {"input": [[1]], "model": "x:query"}, 404, "'x:query' is not served"),
    ],
)
def test_bad_bodies_get_a_4xx_that_names_the_problem(
    server: RunningServer, path: str, body: object, status: int, says: str
) -> None:
    if isinstance(body, bytes):
        headers = {"Content-Type": "application/json"}
        answer = httpx.post(server.url + path, content=body, headers=headers)
    else:
        answer = httpx.post(server.url + path, json=body)
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]["message"]
    assert says in message
    assert "Traceback" not in answer.text


def test_oversized_requests_get_413(server: RunningServer) -> None:
    too_many = httpx.post(server.url + "/v2/rerank", json={"query": QUERY, "documents": ["a"] * 51})
    assert too_many.status_code == 413
    assert "51 documents" in too_many.json()["message"]
    too_big = httpx.post(server.url + "/v1/embeddings", json={"input": ["word " * 5000]})
    assert too_big.status_code == 413
    assert "20000 bytes" in too_big.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while it streams
        yield b'{"input": ["'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"]}'

    streamed = httpx.post(server.url + "/v1/embeddings", content=chunks())
    assert streamed.status_code == 413


def test_two_hundred_concurrent_requests_lose_none(
    server: RunningServer, embedder: Qwen3Embedder, reranker: Qwen3Reranker, corpus: list[str]
) -> None:
    """Every request is answered, with its own results, however they were merged."""
    calls_before = server.metric("qwen3_rag_batch_requests_count", model="reranker")

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            requests = []
            for i in range(200):
                documents = corpus[i % 7 : i % 7 + 3]
                if i % 2:
                    body = {"query": QUERY, "documents": documents}
                    requests.append(client.post("/v2/rerank", json=body))
                else:
                    requests.append(client.post("/v1/embeddings", json={"input": documents}))
            return await asyncio.gather(*requests)

    answers = asyncio.run(run())
    assert [a.status_code for a in answers] == [200] * 200
    for i, answer in enumerate(answers):
        documents = corpus[i % 7 : i % 7 + 3]
        if i % 2:
            scores = {r["index"]: r["log_odds"] for r in answer.json()["results"]}
            want = reranker.logits(QUERY, documents)
            np.testing.assert_allclose([scores[j] for j in range(3)], want, atol=1e-5)
        else:
            vectors = [row["embedding"] for row in answer.json()["data"]]
            np.testing.assert_allclose(vectors, embedder.embed_documents(documents), atol=1e-5)
    # Fewer engine calls than requests: concurrent requests were merged.
    calls = server.metric("qwen3_rag_batch_requests_count", model="reranker") - calls_before
    assert 1 <= calls < 100


def test_requests_queued_behind_a_busy_engine_are_merged_into_one_call(
    server: RunningServer, reranker: Qwen3Reranker, corpus: list[str]
) -> None:
    calls = server.metric("qwen3_rag_batch_requests_count", model="reranker")
    merged = server.metric("qwen3_rag_batch_requests_sum", model="reranker")
    with hold_engine(server) as release, httpx.Client(base_url=server.url, timeout=30) as client:
        threads = []
        answers: list[httpx.Response] = []
        for i in range(6):
            body = {"query": QUERY, "documents": corpus[i : i + 2]}
            thread = threading.Thread(
                target=lambda b=body: answers.append(client.post("/v2/rerank", json=b))
            )
            thread.start()
            threads.append(thread)
        wait_for(lambda: server.metric("qwen3_rag_queue_depth", model="reranker") == 6)
        release.set()
        for thread in threads:
            thread.join()
    assert [a.status_code for a in answers] == [200] * 6
    assert server.metric("qwen3_rag_batch_requests_count", model="reranker") == calls + 1
    assert server.metric("qwen3_rag_batch_requests_sum", model="reranker") == merged + 6


def test_a_full_queue_answers_429_with_retry_after(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker
) -> None:
    settings = ServeSettings(max_concurrent_requests=2)
    with (
        RunningServer(create_app(embedder, reranker, settings=settings)) as server,
        hold_engine(server) as release,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        answers: list[httpx.Response] = []
        threads = [
            threading.Thread(
                target=lambda: answers.append(client.post("/v1/embeddings", json={"input": ["a"]}))
            )
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        wait_for(lambda: server.metric("qwen3_rag_requests_in_flight") == 2)
        refused = client.post("/v1/embeddings", json={"input": ["a"]})
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert "limit of 2 requests" in refused.json()["message"]
        assert client.get("/health").status_code == 200  # health checks are never queued
        release.set()
        for thread in threads:
            thread.join()
        assert [a.status_code for a in answers] == [200, 200]
        assert client.post("/v1/embeddings", json={"input": ["a"]}).status_code == 200


def test_a_client_that_disconnects_leaves_no_work_behind(
    server: RunningServer, corpus: list[str]
) -> None:
    inputs = server.metric("qwen3_rag_inputs_total", model="reranker")
    dropped = server.metric("qwen3_rag_dropped_total", model="reranker")
    with hold_engine(server) as release:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
            httpx.post(
                server.url + "/v2/rerank",
                json={"query": QUERY, "documents": corpus[:5]},
                timeout=httpx.Timeout(30, read=0.5),
            )
        wait_for(lambda: server.metric("qwen3_rag_queue_depth", model="reranker") == 1)
        release.set()
    wait_for(lambda: server.metric("qwen3_rag_dropped_total", model="reranker") == dropped + 1)
    wait_for(lambda: server.metric("qwen3_rag_requests_in_flight") == 0)
    assert server.metric("qwen3_rag_inputs_total", model="reranker") == inputs  # none computed
    assert server.metric("qwen3_rag_requests_total", endpoint="/v2/rerank", status="499") >= 1


def test_the_deadline_answers_504_and_drops_the_work(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker
) -> None:
    settings = ServeSettings(request_timeout_s=0.3)
    with RunningServer(create_app(embedder, reranker, settings=settings)) as server:
        with hold_engine(server):
            late = httpx.post(server.url + "/v1/embeddings", json={"input": ["a"]}, timeout=30)
            assert late.status_code == 504
            assert "deadline of 0.3 s" in late.json()["message"]
        wait_for(lambda: server.metric("qwen3_rag_dropped_total", model="embedding") == 1)
        assert server.metric("qwen3_rag_inputs_total", model="embedding") == 0


def test_api_key_required_and_never_logged(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ServeSettings(api_key=KEY)
    assert KEY not in repr(settings)
    caplog.set_level(logging.DEBUG)
    with RunningServer(create_app(embedder, reranker, settings=settings)) as server:
        body = {"query": QUERY, "documents": ["a", "b"]}
        missing = httpx.post(server.url + "/v2/rerank", json=body)
        wrong = httpx.post(
            server.url + "/v2/rerank", json=body, headers={"Authorization": "Bearer sk-wrong"}
        )
        good = httpx.post(
            server.url + "/v2/rerank", json=body, headers={"Authorization": f"Bearer {KEY}"}
        )
        assert (missing.status_code, wrong.status_code, good.status_code) == (401, 401, 200)
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert "the API key is wrong" in wrong.json()["message"]
        assert httpx.get(server.url + "/health").status_code == 200  # open to load balancers
        assert httpx.get(server.url + "/metrics").status_code == 401
        # A refusal that quotes the request's model keeps a key out of it, and out of the log.
        failing = httpx.post(
            server.url + "/v1/embeddings",
            json={"input": ["a"], "model": f"Bearer {KEY}"},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert failing.status_code == 404
        assert "is not served here" in failing.json()["message"]
    assert KEY not in caplog.text
    assert all(KEY not in (a.text + str(a.headers)) for a in (missing, wrong, failing))


def test_shutdown_drains_the_requests_in_flight(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker
) -> None:
    server = RunningServer(create_app(embedder, reranker)).start()
    answers: list[httpx.Response] = []
    with hold_engine(server) as release:
        thread = threading.Thread(
            target=lambda: answers.append(
                httpx.post(server.url + "/v1/embeddings", json={"input": ["a"]}, timeout=30)
            )
        )
        thread.start()
        wait_for(lambda: server.metric("qwen3_rag_queue_depth", model="embedding") == 1)
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        time.sleep(0.3)  # shutting down, with the request still queued
        release.set()
        thread.join()
        stopping.join()
    assert [a.status_code for a in answers] == [200]
    assert len(answers[0].json()["data"]) == 1


def test_command_line_refuses_an_open_address_without_a_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QWEN3_RAG_API_KEY", raising=False)
    assert main(["serve", "--tiny", "--host", "0.0.0.0"]) == 2
    assert "--api-key" in capsys.readouterr().err
    assert main(["serve", "--tiny", "--no-auth", "--api-key", KEY]) == 2
    assert KEY not in capsys.readouterr().err
    assert main(["serve", "--tiny", "--max-documents", "0"]) == 2
    assert "--max-documents must be a positive int" in capsys.readouterr().err
    assert main(["serve"]) == 2
    assert "nothing to serve" in capsys.readouterr().err
    assert main(["serve", "--tiny", "--served-model-name", "only-one"]) == 2
    assert "once per model served" in capsys.readouterr().err
    for name, problem in SERVED_NAME_PROBLEMS:
        served = ["--served-model-name", name, "--served-model-name", "rerank"]
        assert main(["serve", "--tiny", *served]) == 2
        assert f"--served-model-name {problem}" in capsys.readouterr().err


def test_create_app_refuses_a_served_name_clients_cannot_send(
    embedder: Qwen3Embedder, reranker: Qwen3Reranker
) -> None:
    for name, problem in SERVED_NAME_PROBLEMS:
        with pytest.raises(ValueError, match=f"embedding_model_name {problem}"):
            create_app(embedder, reranker, embedding_model_name=name)
    with pytest.raises(ValueError, match="reranker_model_name='rerank' names no model"):
        create_app(embedder, reranker_model_name="rerank")


def test_command_line_serves_until_terminated(tmp_path: Path) -> None:
    """``qwen3-rag serve --tiny``: the key from the environment, a request; SIGTERM shuts it
    down cleanly (and, as uvicorn does, the process then ends by that signal); the key is in
    none of its output."""
    port = free_port()
    env = {**os.environ, "QWEN3_RAG_API_KEY": KEY}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        names = ["--served-model-name", "tiny-embed", "--served-model-name", "tiny-rerank"]
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qwen3_core.cli",
                "serve",
                "--tiny",
                "--port",
                str(port),
                *names,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the server did not start"
                try:
                    if httpx.get(url + "/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            headers = {"Authorization": f"Bearer {KEY}"}
            body = {"query": QUERY, "documents": ["a", "b"]}
            assert httpx.post(url + "/v2/rerank", json=body, headers=headers).status_code == 200
            assert httpx.post(url + "/v2/rerank", json=body).status_code == 401
            listed = httpx.get(url + "/v1/models", headers=headers).json()["data"]
            assert [model["id"] for model in listed] == ["tiny-embed", "tiny-rerank"]
            named = {**body, "model": "tiny-rerank"}
            assert httpx.post(url + "/v2/rerank", json=named, headers=headers).status_code == 200
            wrong = {**body, "model": "tiny-embed"}
            assert httpx.post(url + "/v2/rerank", json=wrong, headers=headers).status_code == 404
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(60)
    output = log.read_text()
    assert code == -signal.SIGTERM, output
    assert "Application shutdown complete" in output
    assert f"Serving on http://127.0.0.1:{port} (with an API key)" in output
    assert KEY not in output
