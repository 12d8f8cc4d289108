"""Work nobody waits for is dropped, the queue is bounded, and /interrupt stops one request, as in A1111.

A client that gives up is a real socket closed by the test; every wait is on an observable event
(/progress, /stats), never on a clock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from inference_api.settings import ServerSettings
from tests.runtime_helpers import (
    TINY,
    RunningServer,
    build_tiny_models,
    one_torch_thread_fixture,  # noqa: F401
    post_raw,
    serve_in_thread,
    wait_until,
)

SMALL = {"prompt": "a photo of a cat", "steps": 3, "width": 64, "height": 64}
LONG = {**SMALL, "steps": 150, "width": 256, "height": 256, "seed": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = build_tiny_models(tmp_path_factory.mktemp("robust-models"), TINY)
    with serve_in_thread(ServerSettings(models_dir=root, max_batch=1, max_queue=1)) as running:
        yield running


def _stats(server: RunningServer) -> dict[str, Any]:
    return server.client.get("/stats").json()


def _sampling(server: RunningServer) -> bool:
    return server.client.get("/sdapi/v1/progress").json()["state"]["sampling_step"] > 0


def _idle(server: RunningServer) -> bool:
    return (
        server.client.get("/sdapi/v1/progress").json()["state"]["job"] == ""
        and not _stats(server)["batcher"]["waiting"]
    )


def test_a_running_request_whose_client_left_stops_at_the_next_step(server: RunningServer) -> None:
    before = _stats(server)
    sock = post_raw(server.url, "/sdapi/v1/txt2img", LONG)
    wait_until(lambda: _sampling(server), what="the long job to start sampling")
    sock.close()
    wait_until(lambda: _idle(server), what="the worker to drop the abandoned job")
    after = _stats(server)
    assert after["abandoned"] == before["abandoned"] + 1
    assert after["sampling_steps"] - before["sampling_steps"] < LONG["steps"]
    assert server.client.post("/sdapi/v1/txt2img", json=SMALL).status_code == 200


def test_a_queued_request_whose_client_left_never_runs(server: RunningServer) -> None:
    before = _stats(server)
    running = post_raw(server.url, "/sdapi/v1/txt2img", LONG)
    wait_until(lambda: _sampling(server), what="the long job to start sampling")
    queued = post_raw(server.url, "/sdapi/v1/txt2img", {**SMALL, "seed": 5})
    wait_until(lambda: _stats(server)["batcher"]["waiting"] == 1, what="the second request to queue")
    queued.close()
    wait_until(lambda: _stats(server)["batcher"]["waiting"] == 0, what="the queue to drop it")
    running.close()
    wait_until(lambda: _idle(server), what="the worker to go idle")
    after = _stats(server)
    assert after["abandoned"] == before["abandoned"] + 2
    # Only the long job went through the worker; the queued one was taken out before it ran.
    assert after["batcher"]["requests"] == before["batcher"]["requests"] + 1


def test_past_the_queue_bound_requests_get_503_with_retry_after(server: RunningServer) -> None:
    running = post_raw(server.url, "/sdapi/v1/txt2img", LONG)
    wait_until(lambda: _sampling(server), what="the long job to start sampling")
    queued = post_raw(server.url, "/sdapi/v1/txt2img", SMALL)
    wait_until(lambda: _stats(server)["batcher"]["waiting"] == 1, what="the queue to fill")
    try:
        refused = server.client.post("/sdapi/v1/txt2img", json=SMALL)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        assert refused.json()["error"]["code"] == "queue_full"
        ready = server.client.get("/ready")  # a request sent now would not run: not ready
        assert ready.status_code == 503 and "waiting" in ready.json()["error"]["message"]
        assert server.client.get("/health").status_code == 200  # busy is not broken
        assert _stats(server)["rejected"] >= 1
    finally:
        queued.close()
        running.close()
    wait_until(lambda: _idle(server), what="the worker to go idle")
    assert server.client.get("/ready").status_code == 200


def test_interrupt_stops_only_the_running_request(server: RunningServer) -> None:
    responses: dict[str, Any] = {}
    queued_body = {**SMALL, "seed": 77, "prompt": "a dog"}

    def send(name: str, body: dict[str, Any]) -> None:
        responses[name] = server.client.post("/sdapi/v1/txt2img", json=body)

    first = threading.Thread(target=send, args=("running", LONG))
    first.start()
    wait_until(lambda: _sampling(server), what="the long job to start sampling")
    second = threading.Thread(target=send, args=("queued", queued_body))
    second.start()
    wait_until(lambda: _stats(server)["batcher"]["waiting"] == 1, what="the second request to queue")
    assert server.client.post("/sdapi/v1/interrupt").status_code == 200
    first.join(timeout=120)
    second.join(timeout=120)
    interrupted, untouched = responses["running"], responses["queued"]
    assert interrupted.status_code == 200 and len(interrupted.json()["images"]) == 1
    assert "interrupted" in " ".join(json.loads(interrupted.json()["info"])["extra_generation_params"]["notes"])
    # The queued request ran in full, and gives the image it gives alone.
    assert untouched.status_code == 200
    assert "interrupted" not in json.dumps(json.loads(untouched.json()["info"])["extra_generation_params"])
    alone = server.client.post("/sdapi/v1/txt2img", json=queued_body)
    assert alone.json()["images"] == untouched.json()["images"]


def test_bad_requests_are_4xx_and_do_not_count_against_health(server: RunningServer) -> None:
    for _ in range(6):  # more than unhealthy_after_failures
        assert server.client.post("/sdapi/v1/txt2img", json={**SMALL, "sampler_name": "Nope"}).status_code == 422
    assert server.client.get("/health").status_code == 200
    assert _stats(server)["consecutive_failures"] == 0
