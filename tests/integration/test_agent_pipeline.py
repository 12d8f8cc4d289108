"""The agent end to end, in process: moto over HTTP for AWS, a fake AUTOMATIC1111 over HTTP.

Each test drives the real pipeline (receiver -> runner -> finisher) and checks what a client
could observe: notifications on the results topic, objects in S3, status records, the queue.
"""

from __future__ import annotations

import base64
import json
import ssl

import pytest

from contract import cancel_request_update, utcnow
from queue_agent.agent import Overrides
from queue_agent.fetch import HttpsFetcher
from tests.agent_fakes.a1111 import Behavior, FakeA1111
from tests.agent_fakes.aws_world import AgentWorld, async_wait_until, task
from tests.agent_fakes.fixtures import a1111_fixture, world_fixture  # noqa: F401
from tests.agent_fakes.harness import running_agent
from tests.agent_fakes.images import png
from tests.agent_fakes.tls import Reply, TlsServer, make_certs

pytestmark = pytest.mark.timeout(120)


async def test_every_task_type_completes(world: AgentWorld, a1111: FakeA1111) -> None:
    init = world.put_object("inputs/cat.png", png(7))
    other_bucket = "agenttest-inputs"
    world.client("s3").create_bucket(Bucket=other_bucket)
    batch_ref = world.put_object("batch/dog.png", png(9), bucket=other_bucket)
    inline = base64.b64encode(png(3)).decode()
    ids = [
        world.submit(task("t2i", content={"prompt": "a dog", "steps": 4, "batch_size": 2}, context={"user": "u1"})),
        world.submit(task("i2i", "image-to-image", {"prompt": "a cat", "init_images": [init]}), via="sqs"),
        world.submit(task("extra", "extra-single-image", {"image": inline, "upscaling_resize": 2})),
        world.submit(task("batch", "extra-batch-image", {"imageList": [{"data": batch_ref, "name": "d"}]})),
        world.submit(task("legacy", content={"prompt": "from the old sample"}), via="raw-request", record=False),
    ]
    env = world.agent_env(a1111.base_url, ALLOWED_INPUT_BUCKETS=other_bucket)
    async with running_agent(env):
        notes = await world.await_notifications(len(ids))

    by_id = {n["id"]: n for n in notes}
    assert sorted(by_id) == sorted(ids) and len(notes) == len(ids)
    for task_id, note in by_id.items():
        assert note["status"] == "completed" and note["result"] is True, note
        assert note["_attributes"] == {"runtime": "sdruntime", "status": "completed"}
        assert note["error"] is None
        assert {"receive_wait", "queue_time", "prefetch_wait", "runtime", "upload", "total"} <= note["timings"].keys()
        assert note["output_url"] == f"s3://{world.bucket}/output/{task_id}/{task_id}.out"
        objects = world.objects(f"output/{task_id}/")
        assert set(objects) == {u.split("/", 3)[3] for u in note["image_url"]} | {f"output/{task_id}/{task_id}.out"}
        for url in note["image_url"]:
            assert objects[url.split("/", 3)[3]].startswith(b"\x89PNG")
        record = world.status(task_id)
        assert record is not None
        assert record["status"] == "completed" and record["image_url"] == note["image_url"]
        assert record["notified"] == "completed" and int(record["attempts"]) == 1
    assert len(by_id["t2i"]["image_url"]) == 2
    assert by_id["t2i"]["context"] == {"user": "u1"}
    out = json.loads(world.objects("output/i2i/")["output/i2i/i2i.out"])
    assert out["image_url"] == by_id["i2i"]["image_url"] and "init_images" not in out["parameters"]
    # References were inlined as base64 of exactly the stored bytes before the runtime saw them.
    calls = {c.endpoint: c.payload for c in a1111.finished_calls(200)}
    assert base64.b64decode(calls["img2img"]["init_images"][0]) == png(7)
    assert base64.b64decode(calls["extra-batch-images"]["imageList"][0]["data"]) == png(9)
    assert set(calls) == {"txt2img", "img2img", "extra-single-image", "extra-batch-images"}
    assert world.queue_counts() == (0, 0)


async def test_rejected_payload_fails_at_once_without_retries(world: AgentWorld, a1111: FakeA1111) -> None:
    a1111.behavior = Behavior(reject=True)
    ids = [world.submit(task(f"bad{i}")) for i in range(3)]
    async with running_agent(world.agent_env(a1111.base_url)):
        notes = await world.await_notifications(3)
        await async_wait_until(lambda: world.queue_counts() == (0, 0), 10, what="queue empty")
    assert sorted(n["id"] for n in notes) == sorted(ids)
    for note in notes:
        assert note["status"] == "failed" and note["result"] is False
        assert note["_attributes"]["status"] == "failed"
        assert note["error"]["code"] == "runtime_rejected" and "422" in note["error"]["message"]
        assert world.status_of(note["id"]) == "failed"
    assert len(a1111.finished_calls()) == 3  # one call per task: a rejection is never retried
    assert world.objects() == {}
    assert world.dlq_bodies() == []


async def test_an_answer_that_cannot_be_decoded_fails_the_task(world: AgentWorld, a1111: FakeA1111) -> None:
    a1111.behavior = Behavior(garbage=True)
    world.submit(task("garbled"))
    async with running_agent(world.agent_env(a1111.base_url)):
        (note,) = await world.await_notifications(1)
        await async_wait_until(lambda: world.queue_counts() == (0, 0), 10, what="queue empty")
    assert note["status"] == "failed" and note["error"]["code"] == "runtime_bad_response"
    assert len(a1111.calls) == 1 and world.objects() == {}


async def test_transient_failures_are_retried_until_every_job_completes(world: AgentWorld, a1111: FakeA1111) -> None:
    a1111.behavior = Behavior(transient_rate=0.3, seed=7)
    ids = [world.submit(task(f"flaky{i}")) for i in range(12)]
    async with running_agent(world.agent_env(a1111.base_url, TRANSIENT_RETRIES="2")):
        await world.await_notifications(12, timeout=60)
        await async_wait_until(lambda: world.queue_counts() == (0, 0), 10, what="queue empty")
    assert world.notes_per_task() == {i: 1 for i in ids}
    assert all(n["status"] == "completed" for n in world.notifications())
    assert len(a1111.finished_calls(503)) > 0  # the fault injection really happened
    assert sorted(a1111.prompts()) == sorted(f"a fake picture {i}" for i in ids)  # each succeeded once


async def test_job_three_times_longer_than_the_visibility_timeout_runs_once(aws_env, a1111: FakeA1111) -> None:
    # Beats every 0.3 s against a 3 s visibility: a beat may be 2.7 s late before anything reappears.
    world = AgentWorld(aws_env.endpoint, visibility_timeout=3).create()
    a1111.behavior = Behavior(delay=9.0)
    task_id = world.submit(task("long"))
    async with running_agent(world.agent_env(a1111.base_url, HEARTBEAT_INTERVAL_SECONDS="0.3")) as agent:
        await world.await_notifications(1, timeout=60)
        assert agent.ctx.leases.extension == 3  # derived from the queue, not from a generous default
    assert len(a1111.finished_calls()) == 1
    assert world.notes_per_task() == {task_id: 1}
    assert world.notifications()[0]["timings"]["runtime"] >= 9.0
    assert world.queue_counts() == (0, 0)


async def test_last_delivery_fails_the_task_and_leaves_the_message_to_the_dlq(aws_env, a1111: FakeA1111) -> None:
    world = AgentWorld(aws_env.endpoint, max_receive_count=2).create()
    a1111.behavior = Behavior(transient_rate=1.0)
    task_id = world.submit(task("doomed"))
    env = world.agent_env(a1111.base_url, TRANSIENT_RETRIES="1")
    async with running_agent(env):
        notes = await world.await_notifications(1, timeout=30)
    # Receive once more, as any consumer would: SQS moves the message past maxReceiveCount to the DLQ.
    await async_wait_until(lambda: world.drain_queue() == 0 and world.dlq_bodies(), 10, what="message in the DLQ")
    assert [n["status"] for n in notes] == ["failed"]
    assert notes[0]["error"]["code"] == "runtime_unavailable"
    assert "gave up after 2 deliveries" in notes[0]["error"]["message"]
    assert notes[0]["attempts"] == 2
    assert len(a1111.finished_calls(503)) == 4  # 2 deliveries x (1 try + 1 retry)
    record = world.status(task_id)
    assert record is not None
    assert record["status"] == "failed" and record["notified"] == "failed"
    assert json.loads(world.dlq_bodies()[0])["Type"] == "Notification"  # the original, enveloped message
    assert world.notes_per_task() == {task_id: 1}


async def test_cancelled_task_is_skipped_and_announced_once(world: AgentWorld, a1111: FakeA1111) -> None:
    fresh = world.submit(task("cancel-me"))
    world.update_status(fresh, status="cancelled")
    announced = world.submit(task("cancelled-before"))
    world.update_status(announced, status="cancelled", notified="cancelled")
    runs = world.submit(task("runs"))
    async with running_agent(world.agent_env(a1111.base_url)):
        await world.await_notifications(2)
        await async_wait_until(lambda: world.queue_counts() == (0, 0), 10, what="queue empty")
    assert world.notes_per_task() == {fresh: 1, runs: 1}
    statuses = {n["id"]: n["status"] for n in world.notifications()}
    assert statuses == {fresh: "cancelled", runs: "completed"}
    assert a1111.prompts() == ["a fake picture runs"]


async def test_cancel_requested_while_running_interrupts_the_runtime(world: AgentWorld, a1111: FakeA1111) -> None:
    a1111.behavior = Behavior(delay=20.0)
    task_id = world.submit(task("interrupt-me"))
    table = world._table()
    async with running_agent(world.agent_env(a1111.base_url)):
        await async_wait_until(lambda: world.status_of(task_id) == "running", 10, what="running")
        await async_wait_until(lambda: a1111.calls, 10, what="runtime call")
        table.update_item(**cancel_request_update(task_id, utcnow()))
        notes = await world.await_notifications(1, timeout=15)
    assert [(n["id"], n["status"]) for n in notes] == [(task_id, "cancelled")]
    assert a1111.interrupts >= 1 and a1111.finished_calls()[0].interrupted
    assert world.status_of(task_id) == "cancelled"
    assert world.objects() == {}  # a cancelled task leaves no outputs


async def test_redelivered_finished_job_is_not_run_again(world: AgentWorld, a1111: FakeA1111) -> None:
    task_id = world.submit(task("once"), nonce="n-once")
    async with running_agent(world.agent_env(a1111.base_url)):
        await world.await_notifications(1)
        # The same message again (an at-least-once duplicate): announced already, so only deleted.
        world.submit(task("once"), record=False, nonce="n-once")
        # And a task whose earlier attempt crashed after the status write but before the publish.
        crashed = world.submit(task("crashed"))
        world.update_status(crashed, status="completed", image_url=["s3://x/y.png"], output_url="s3://x/y.out")
        notes = await world.await_notifications(2)
        await async_wait_until(lambda: world.queue_counts() == (0, 0), 10, what="queue empty")
    assert world.notes_per_task() == {task_id: 1, crashed: 1}
    reannounced = next(n for n in notes if n["id"] == crashed)
    assert reannounced["status"] == "completed" and reannounced["image_url"] == ["s3://x/y.png"]
    assert a1111.prompts() == ["a fake picture once"]


async def test_result_in_s3_without_a_status_table_is_not_run_again(world: AgentWorld, a1111: FakeA1111) -> None:
    env = world.agent_env(a1111.base_url, STATUS_TABLE="")
    async with running_agent(env):
        world.submit(task("no-table"), record=False, nonce="n-nt")
        await world.await_notifications(1)
        world.submit(task("no-table"), record=False, nonce="n-nt")
        await async_wait_until(lambda: world.queue_counts() == (0, 0), 10, what="duplicate consumed")
    assert a1111.prompts() == ["a fake picture no-table"]
    assert world.status("no-table") is None
    # Without a table there is no announcement guard: the duplicate is announced again, with the
    # stored result (notifications are at least once in this mode).
    first, again = world.notifications()
    assert first["status"] == again["status"] == "completed"
    assert first["image_url"] == again["image_url"] and first["output_url"] == again["output_url"]


async def test_invalid_messages_fail_with_a_notification(world: AgentWorld, a1111: FakeA1111) -> None:
    world.send_raw(json.dumps(task("bad-steps", content={"prompt": "x", "steps": 100000}) | {}))
    world.send_raw("this is not json")
    async with running_agent(world.agent_env(a1111.base_url)):
        notes = await world.await_notifications(2)
        await async_wait_until(lambda: world.queue_counts() == (0, 0), 10, what="queue empty")
    assert all(n["status"] == "failed" and n["error"]["code"] == "invalid_message" for n in notes)
    named = next(n for n in notes if n["id"] == "bad-steps")
    assert "task.content.steps" in named["error"]["message"]
    assert a1111.calls == []


async def test_refused_input_references_fail_naming_the_field(world: AgentWorld, a1111: FakeA1111) -> None:
    world.client("s3").create_bucket(Bucket="not-allowed")
    elsewhere = world.put_object("x.png", png(1), bucket="not-allowed")
    world.submit(task("foreign-bucket", "image-to-image", {"prompt": "p", "init_images": [elsewhere]}))
    world.submit(task("missing-key", "extra-single-image", {"image": f"s3://{world.bucket}/nope.png"}))
    async with running_agent(world.agent_env(a1111.base_url)):
        notes = {n["id"]: n for n in await world.await_notifications(2)}
    assert notes["foreign-bucket"]["error"]["code"] == "input_refused"
    assert "task.content.init_images.0" in notes["foreign-bucket"]["error"]["message"]
    assert notes["missing-key"]["error"]["code"] == "input_unreadable"
    assert "task.content.image" in notes["missing-key"]["error"]["message"]
    assert a1111.calls == []


async def test_dynamic_model_switch_through_options(world: AgentWorld, a1111: FakeA1111) -> None:
    overrides = {"override_settings": {"sd_model_checkpoint": "model-b.safetensors"}}
    world.submit(task("on-b", content={"prompt": "b", **overrides}))
    world.submit(task("still-b", content={"prompt": "b2", **overrides}))
    async with running_agent(world.agent_env(a1111.base_url, DYNAMIC_SD_MODEL="true")):
        await world.await_notifications(2)
    assert a1111.model_switches == ["model-b.safetensors"]  # switched once, then already loaded
    assert a1111.options["sd_model_checkpoint"].startswith("model-b")


async def test_prefetch_is_bounded_so_other_pods_can_take_the_rest(world: AgentWorld, a1111: FakeA1111) -> None:
    a1111.behavior = Behavior(delay=0.4)
    for i in range(6):
        world.submit(task(f"bounded{i}"))
    held: list[int] = []
    # Messages taken off the queue whose call the runtime has not answered yet. Read in this order
    # (queue first, then the runtime's log) a sample can only undercount, never overcount.
    unanswered: list[int] = []

    def sample() -> bool:
        visible, invisible = world.queue_counts()
        answered = len(a1111.finished_calls())
        held.append(invisible)
        unanswered.append(6 - visible - answered)
        return len(world.notifications()) >= 6

    async with running_agent(world.agent_env(a1111.base_url, PREFETCH="1")):
        await async_wait_until(sample, 30, interval=0.1, what="all jobs")
    # Before the runtime answers, a message is one of RUNTIME_INFLIGHT (2) calls at the runtime or the
    # PREFETCH (1) waiting; everything else stays visible to other pods. (Answered messages are still held
    # while the finisher uploads and notifies, several at once, until their deletes land.)
    assert max(unanswered) <= 3
    assert max(held) >= 3  # and the calls in flight and the prefetch really happen


async def test_https_inputs_are_fetched_and_inlined(world: AgentWorld, a1111: FakeA1111, tmp_path) -> None:
    ca, cert, key = make_certs(tmp_path, "images.example.com")
    server = TlsServer(cert, key, routes={"/cat.png": Reply(body=png(21))}).start()

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "images.example.com" else []

    fetcher = HttpsFetcher(
        max_bytes=1 << 20,
        timeout=5,
        resolve=resolve,
        allow_address=lambda ip: ip == "127.0.0.1",  # the local server plays a public host
        verify=ssl.create_default_context(cafile=str(ca)),
    )
    image = f"https://images.example.com:{server.port}/cat.png"
    try:
        world.submit(task("from-web", "extra-single-image", {"image": image}))
        async with running_agent(world.agent_env(a1111.base_url), Overrides(fetcher=fetcher)):
            (note,) = await world.await_notifications(1)
    finally:
        server.stop()
    assert note["status"] == "completed"
    (call,) = a1111.finished_calls(200)
    assert base64.b64decode(call.payload["image"]) == png(21)


async def test_metrics_count_what_happened(world: AgentWorld, a1111: FakeA1111) -> None:
    for i in range(3):
        world.submit(task(f"m{i}"))
    async with running_agent(world.agent_env(a1111.base_url)) as agent:
        await world.await_notifications(3)
        await async_wait_until(lambda: world.queue_counts() == (0, 0), 10, what="queue empty")
        registry = agent.ctx.metrics.registry
        assert registry.get_sample_value("queue_agent_jobs_total", {"status": "completed"}) == 3
        assert registry.get_sample_value("queue_agent_runtime_idle_gap_seconds_count") == 2
        assert registry.get_sample_value("queue_agent_job_duration_seconds_count", {"tasktype": "text-to-image"}) == 3
        assert registry.get_sample_value("queue_agent_in_flight_messages") == 0
