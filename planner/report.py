"""How a plan is shown: a table for people, JSON for scripts, a PNG of the fleet over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from planner.plan import PlanResult


def _cost_rows(lines: list[dict[str, Any]]) -> list[str]:
    rows = []
    for kind in (False, True):
        for line in (item for item in lines if item["fixed"] is kind):
            quantity = f"{line['quantity']:,.2f} {line['unit']}"
            rows.append(f"  {'fixed   ' if kind else 'variable'}  {line['item']:<46} {quantity:>22}  "
                        f"${line['usd']:>10,.2f}")
    return rows


def table(result: PlanResult) -> str:
    d = result.as_dict()
    c, lat = d["cost_usd"], d["latency_s"]
    out = [
        f"Plan for runtime {d['runtime']!r}: {d['images']:,} images over {d['days']:g} days ({d['arrival']}), "
        f"prices {d['prices']['region']} as of {d['prices']['as_of']}",
        f"  per image {d['seconds_per_image']:g} s ({d['seconds_per_image_source']})",
        "",
        f"  completed           {d['completed']:>12,}   dead-lettered {d['dead_lettered']:,}, "
        f"rejected by the throttle {d['rejected']:,}",
        f"  GPU hours           {d['gpu_hours']:>12,.1f}   busy fraction {d['busy_fraction']:.1%}",
        f"  latency (s)         p50 {lat['p50']:,.1f}   p95 {lat['p95']:,.1f}   max {lat['max']:,.1f}",
        f"  GPU nodes           max {d['nodes']['max']}   mean {d['nodes']['mean']:.2f}   "
        f"launches {d['nodes']['launches']:,}   spot interruptions {d['interruptions']:,}",
        f"  backlog max         {d['backlog_max']:,} messages",
        "",
        "  cost (USD)",
        *_cost_rows(c["lines"]),
        f"  {'':10}{'variable':<46} {'':>22}  ${c['variable']:>10,.2f}",
        f"  {'':10}{'fixed':<46} {'':>22}  ${c['fixed']:>10,.2f}",
        f"  {'':10}{'total':<46} {'':>22}  ${c['total']:>10,.2f}",
        f"  {'':10}{'per 1,000 images':<46} {'':>22}  ${c['per_1k_images'] or 0:>10,.4f}",
    ]
    anchor = d.get("full_utilization")
    if anchor:
        out += [
            "",
            "  the sample's arithmetic (--assume-full-utilization: GPU busy every paid hour, no NAT)",
            *_cost_rows(anchor["lines"]),
            f"  {'':10}{'total':<46} {'':>22}  ${anchor['total']:>10,.2f}",
        ]
    if d["warnings"]:
        out += ["", *(f"  warning: {w}" for w in d["warnings"])]
    return "\n".join(out)


def sweep_table(key: str, rows: list[tuple[Any, PlanResult]]) -> str:
    out = [f"{key:>24}  {'total $':>12}  {'per 1k $':>10}  {'p50 s':>9}  {'p95 s':>9}  {'busy':>6}  {'nodes max':>9}"]
    for value, result in rows:
        d = result.as_dict()
        out.append(
            f"{value!s:>24}  {d['cost_usd']['total']:>12,.2f}  {d['cost_usd']['per_1k_images'] or 0:>10,.4f}  "
            f"{d['latency_s']['p50']:>9,.1f}  {d['latency_s']['p95']:>9,.1f}  {d['busy_fraction']:>6.1%}  "
            f"{d['nodes']['max']:>9}"
        )
    return "\n".join(out)


PLOT_SIZE_INCHES = (12.0, 8.0)
PLOT_DPI = 100


def plot(result: PlanResult, path: Path) -> None:
    """Queue depth, pods, nodes and latency over time, in one PNG of 1200 x 800 pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl, o = result.outcome.timeline, result.outcome
    hours = [t / 3600.0 for t in tl.t]
    fig, axes = plt.subplots(3, 1, figsize=PLOT_SIZE_INCHES, dpi=PLOT_DPI, sharex=True)
    axes[0].plot(hours, list(tl.visible), label="visible messages", linewidth=0.8)
    axes[0].plot(hours, list(tl.in_flight), label="in flight", linewidth=0.8)
    axes[0].set_ylabel("queue")
    axes[0].legend(loc="upper right")
    axes[1].step(hours, list(tl.pods), label="ready pods", where="post", linewidth=0.8)
    axes[1].step(hours, list(tl.nodes), label="GPU nodes", where="post", linewidth=0.8)
    axes[1].set_ylabel("count")
    axes[1].legend(loc="upper right")
    stride = max(1, len(o.latencies) // 20_000)  # a readable scatter, drawn in seconds even for 1M images
    done = [t / 3600.0 for t in o.completion_times[::stride]]
    axes[2].scatter(done, list(o.latencies[::stride]), s=1, alpha=0.3)
    axes[2].set_ylabel("latency (s)")
    axes[2].set_xlabel("hours")
    d = result.as_dict()
    fig.suptitle(
        f"{d['runtime']}: {d['images']:,} images / {d['days']:g} days ({d['arrival']}) - "
        f"${d['cost_usd']['total']:,.0f}, p95 {d['latency_s']['p95']:,.1f} s"
    )
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)
