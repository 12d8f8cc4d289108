"""sdq plan: the sample's arithmetic, the simulated mechanisms, properties that must hold, and the outputs."""

from __future__ import annotations

import io
import itertools
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from infra.config import parse_config
from planner import costs, traffic
from planner.cli import main
from planner.plan import Traffic, run_plan
from planner.prices import load_prices
from planner.report import PLOT_DPI, PLOT_SIZE_INCHES
from planner.settings import PlanSettings, Timings, apply_override, model_family, settings_from_config

ROOT = Path(__file__).resolve().parents[2]
SHARED_CONFIG = ROOT.parent / "shared" / "fixtures" / "aws-sample" / "config.yaml"
PRICES = load_prices()

# The sample's own deployment, as its guide prices it: two GPU instance types, spot, scale to zero.
SAMPLE_LIKE = {
    "stackName": "sdoneks",
    "modelBucketArn": "arn:aws:s3:::sdoneks-models",
    "modelsRuntime": [
        {
            "name": "sdruntime",
            "type": "sdwebui",
            "modelFilename": "sd_xl_turbo_1.0.safetensors",
            "extraValues": {
                "karpenter": {"provisioner": {"instanceType": ["g6.2xlarge", "g5.2xlarge"]}},
                "runtime": {"scaling": {"queueLength": 10, "minReplicaCount": 0, "maxReplicaCount": 5,
                                        "cooldownPeriod": 300}},
            },
        }
    ],
}


UNTHROTTLED = apply_override(SAMPLE_LIKE, "APIGW.throttle", {"rateLimit": 10_000, "burstLimit": 5_000})


def plan_settings(raw: dict | None = None, **timings: float) -> PlanSettings:
    return settings_from_config(parse_config(raw or SAMPLE_LIKE), timings=Timings(**timings))


def simulate(settings: PlanSettings, times: list[float], days: float, seed: int = 0):
    return run_plan(settings, PRICES, Traffic(times, days, "test"), seed=seed)


# -- the anchor ------------------------------------------------------------------------------------------


SAMPLE_TABLE = {  # the replaced sample's guide, us-west-2, March 2026, 1M images a month
    "EC2": 416.67 * 0.53,
    "API Gateway": 3.50,
    "Lambda": 12_500 * 0.0000166667 + 0.20,
    "SNS": 2 * 0.50 + 7.62 * 0.09,
    "SQS": 2 * 0.40,
    "S3": 2_000 * 0.005 + 143.05 * 0.023,
    "fixed": 72 + 1_440 * 0.0816,
}


def test_full_utilization_reproduces_the_sample_table_line_by_line() -> None:
    anchor = costs.full_utilization(plan_settings(), PRICES, 1_000_000, 1.5, 30)
    by_group: dict[str, float] = {}
    for line in anchor.lines:
        group = "fixed" if line.fixed else line.item.split(" ")[0]
        group = {"API": "API Gateway"}.get(group, group)
        by_group[group] = by_group.get(group, 0.0) + line.usd
    assert by_group.keys() == SAMPLE_TABLE.keys()
    for group, expected in SAMPLE_TABLE.items():
        assert by_group[group] == pytest.approx(expected, rel=0.05), group
    assert anchor.total == pytest.approx(430, rel=0.05)
    assert anchor.fixed == pytest.approx(189.50, abs=0.01)


def test_cli_anchor_and_simulation_side_by_side() -> None:
    out = io.StringIO()
    code = main(["--config", str(ROOT / "config.yaml"), "--images", "2000", "--days", "1", "--json",
                 "--assume-full-utilization"], stdout=out)
    assert code == 0
    data = json.loads(out.getvalue())
    for key in ("images", "completed", "gpu_hours", "busy_fraction"):
        assert key in data
    assert set(data["cost_usd"]) >= {"variable", "fixed", "total", "per_1k_images"}
    assert set(data["latency_s"]) == {"p50", "p95", "max"}
    assert set(data["nodes"]) >= {"max", "mean"}
    assert "backlog_max" in data
    assert data["completed"] == 2000
    # Idle GPU time under the cooldown, NAT and pulls make the simulated month dearer than the arithmetic.
    assert data["cost_usd"]["total"] > data["full_utilization"]["total"]
    assert 0 < data["busy_fraction"] < 1


# -- mechanisms --------------------------------------------------------------------------------------------


def test_throttle_is_a_token_bucket_with_client_retries() -> None:
    burst = [0.0] * 60  # 60 requests at once against a bucket of 50 refilling 30/s
    result = traffic.throttle(burst, rate=30, burst=50)
    assert len(result.accepted) == 60 and result.rejected == 0
    assert result.throttled_calls == 10
    assert sorted(result.accepted)[50] == pytest.approx(1.0)  # the 10 retried a second later
    hard = traffic.throttle([0.0] * 100, rate=0.001, burst=1, retries=2)
    assert hard.rejected == 99 and hard.throttled_calls == 99 * 3


def test_scale_from_zero_waits_for_node_pod_and_model_then_scales_back() -> None:
    s = plan_settings(node_launch_seconds=100, image_pull_seconds=50, model_load_seconds=20)
    result = simulate(s, [10.0], days=1 / 24)
    o = result.outcome
    assert o.completed == 1 and o.node_launches == 1
    # KEDA polls every 15 s: the message waits for the poll, the node (100 s), the pull (50 s) and load (20 s).
    assert 170 <= o.latencies[0] <= 170 + 15 + 2
    # Cooldown 300 s after the last activity, then consolidateAfter 60 s, then 30 s of shutdown are paid for.
    billed = sum(o.node_seconds.values())
    assert 170 + 300 <= billed <= 170 + 300 + 15 + 60 + 30 + 15 + 2


def test_hpa_scale_up_is_rate_limited_by_its_default_policies() -> None:
    raw = apply_override(UNTHROTTLED, "runtime.scaling", {"maxReplicaCount": 50, "minReplicaCount": 1})
    result = simulate(plan_settings(raw), [100.0] * 1000, days=1 / 24)
    changes = result.outcome.timeline.replicas
    ups = [n for _, n in changes if n > 1][:5]
    # Max(100 %, 4 pods) per 15 s from 1 replica: 1 → 5 → 10 → 20 → 40 → 50, one step per HPA sync.
    assert ups == [5, 10, 20, 40, 50]
    times = [t for t, n in changes if n > 1][:5]
    assert all(b - a == pytest.approx(15.0) for a, b in itertools.pairwise(times))
    assert result.outcome.pods_max == 50 and result.outcome.nodes_max == 50


def test_nodepool_gpu_limit_and_quota_bind_and_are_reported() -> None:
    raw = apply_override(SAMPLE_LIKE, "karpenter.provisioner.resourceLimits", {"nvidia.com/gpu": 2})
    result = simulate(plan_settings(raw), [0.0] * 500, days=1 / 24)
    assert result.outcome.nodes_max == 2
    assert any("NodePool limit" in w for w in result.warnings)
    assert any("maxReplicaCount" in w for w in result.warnings)


def test_in_flight_calls_remove_the_agent_gap() -> None:
    times = [0.0] * 200
    one = simulate(replace(plan_settings(UNTHROTTLED), in_flight=1), times, days=1 / 24)
    two = simulate(replace(plan_settings(UNTHROTTLED), in_flight=2), times, days=1 / 24)
    assert one.outcome.completed == two.outcome.completed == 200
    assert max(two.outcome.latencies) < max(one.outcome.latencies)


def test_spot_interruption_hands_work_back_and_a_replacement_takes_over() -> None:
    s = plan_settings(interruptions_per_hour=30.0)
    times = [i * 2.0 for i in range(1500)]
    result = simulate(s, times, days=1 / 24, seed=3)
    assert result.outcome.interruptions > 0
    assert result.outcome.completed == 1500


def test_model_family_and_sample_config_are_read_as_cdk_reads_them() -> None:
    assert model_family("sd_xl_turbo_1.0.safetensors") == "sdxl-turbo"
    assert model_family("sd_xl_base_1.0.safetensors") == "sdxl"
    assert model_family("v1-5-pruned-emaonly.safetensors") == "sd15"
    ours = settings_from_config(parse_config(yaml.safe_load((ROOT / "config.yaml").read_text())))
    assert ours.fleet.instance_types == ("g6.2xlarge", "g5.2xlarge")
    assert ours.scaling.max_replicas == 5 and ours.scaling.min_replicas == 0
    assert ours.scaling.polling_seconds == 15 and ours.fleet.consolidate_after_seconds == 60
    if SHARED_CONFIG.exists():
        sample = settings_from_config(parse_config(yaml.safe_load(SHARED_CONFIG.read_text())))
        assert sample.fleet.instance_types and sample.scaling.queue_length >= 1


# -- properties ------------------------------------------------------------------------------------------

FAST = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(images=st.integers(20, 600), extra=st.integers(1, 600), seed=st.integers(0, 1000),
       arrival=st.sampled_from(traffic.ARRIVALS))
def test_more_traffic_never_costs_less(images: int, extra: int, seed: int, arrival: str) -> None:
    """The same traffic plus more. One honest exception, priced here: an added request that lands in an idle
    gap a little longer than the cooldown keeps the node up and saves a whole scale-from-zero cycle."""
    s = plan_settings()
    base = traffic.generate(arrival, images, 0.1, seed)
    added = traffic.generate(arrival, extra, 0.1, seed + 1)
    few = simulate(s, base, days=0.1)
    more = simulate(s, sorted(base + added), days=0.1)
    saved = max(0, few.outcome.node_launches - more.outcome.node_launches)
    assert more.costs.total + saved * costs.cold_start_usd(s, PRICES) >= few.costs.total - 1e-9


@FAST
@given(
    bursts=st.lists(st.tuples(st.integers(20, 1500), st.floats(1.0, 120.0), st.floats(0.0, 600.0)),
                    min_size=1, max_size=4),
    seed=st.integers(0, 1000),
)
def test_a_larger_queue_length_never_lowers_p95_on_a_bursty_trace(
    bursts: list[tuple[int, float, float]], seed: int
) -> None:
    """Bursts of any size and spread, each meeting the fleet as the previous one left it at rest (more than
    cooldown + stabilisation apart). Closer bursts can invert the order, and that is the real HPA: a larger
    target drains slower, so the fleet is still awake when the next burst comes (see the README)."""
    rng = random.Random(seed)
    times: list[float] = []
    start = 30.0
    for size, spread, pause in bursts:
        times += [start + rng.random() * spread for _ in range(size)]
        start += 1500.0 + pause
    times.sort()
    days = (start + 600.0) / traffic.DAY
    p95s = []
    for length in (1, 5, 10, 20):
        raw = apply_override(UNTHROTTLED, "runtime.scaling.queueLength", length)
        p95s.append(simulate(plan_settings(raw), times, days=days, seed=seed).as_dict()["latency_s"]["p95"])
    assert p95s == sorted(p95s)


@FAST
@given(images=st.integers(1, 15), seed=st.integers(0, 50))
def test_scale_to_zero_costs_less_than_one_warm_replica_at_low_traffic(images: int, seed: int) -> None:
    """Low traffic: a few requests a day. Each wake-up of the sample's runtime costs about $0.55 (idle tail,
    paid start, a 10 GB community image through the NAT), so past ~20 a day one warm replica is cheaper."""
    times = traffic.generate("steady", images, 1.0, seed)
    zero = simulate(plan_settings(apply_override(SAMPLE_LIKE, "runtime.scaling.minReplicaCount", 0)), times, 1.0)
    one = simulate(plan_settings(apply_override(SAMPLE_LIKE, "runtime.scaling.minReplicaCount", 1)), times, 1.0)
    assert zero.costs.total < one.costs.total


@FAST
@given(rate=st.floats(0.1, 20.0), seed=st.integers(0, 1000), arrival=st.sampled_from(traffic.ARRIVALS))
def test_spot_interruptions_never_lose_an_image(rate: float, seed: int, arrival: str) -> None:
    times = traffic.generate(arrival, 1000, 0.05, seed)
    result = simulate(plan_settings(UNTHROTTLED, interruptions_per_hour=rate), times, days=0.05, seed=seed)
    assert result.outcome.accepted == 1000
    assert result.outcome.completed == 1000 and result.outcome.dead_lettered == 0


# -- outputs ---------------------------------------------------------------------------------------------


def test_plot_writes_a_png_of_the_expected_size(tmp_path: Path) -> None:
    png = tmp_path / "plan.png"
    err = io.StringIO()
    code = main(["--config", str(ROOT / "config.yaml"), "--images", "500", "--days", "0.2", "--arrival", "bursty",
                 "--plot", str(png)], stdout=io.StringIO(), stderr=err)
    assert code == 0, err.getvalue()
    with Image.open(png) as image:
        image.load()
        assert image.format == "PNG"
        assert image.size == (int(PLOT_SIZE_INCHES[0] * PLOT_DPI), int(PLOT_SIZE_INCHES[1] * PLOT_DPI))


def test_sweep_prints_cost_against_p95_per_value() -> None:
    out = io.StringIO()
    code = main(["--config", str(ROOT / "config.yaml"), "--images", "300", "--days", "0.1", "--arrival", "bursty",
                 "--sweep", "runtime.scaling.queueLength=1,10", "--json"], stdout=out)
    assert code == 0
    plans = json.loads(out.getvalue())["plans"]
    assert [p["value"] for p in plans] == ["1", "10"]
    assert plans[0]["nodes"]["max"] >= plans[1]["nodes"]["max"]


def test_trace_file_and_quota_warning(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("submitted_at\n" + "".join(f"2026-03-01T12:00:{i % 60:02d}Z\n" for i in range(120)))
    out = io.StringIO()
    code = main(["--config", str(ROOT / "config.yaml"), "--trace", str(trace), "--quota", "8,0", "--json"],
                stdout=out)
    assert code == 0
    data = json.loads(out.getvalue())
    assert data["requests"] == 120 and data["completed"] == 120
    assert data["nodes"]["max"] == 1
    assert any("quota" in w for w in data["warnings"])


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--timing", "warp=1"], "unknown name 'warp'"),
        (["--quota", "lots"], "--quota"),
        (["--sweep", "nokey"], "KEY=VALUE"),
        (["--set", "modelsRuntime=3"], "modelsRuntime"),
    ],
)
def test_bad_arguments_name_what_is_wrong(argv: list[str], needle: str) -> None:
    err = io.StringIO()
    code = main(["--config", str(ROOT / "config.yaml"), "--images", "10", "--days", "0.01", *argv],
                stdout=io.StringIO(), stderr=err)
    assert code == 2
    assert needle in err.getvalue()
