"""``sdq plan``: what a deployment will cost and how fast it answers, simulated from ``config.yaml``.

Exit codes: 0 planned, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TextIO

from infra.config import ConfigError, config_path, parse_config
from planner import report, traffic
from planner.plan import PlanResult, Traffic, run_plan
from planner.prices import load_prices
from planner.settings import Timings, apply_override, load_raw, parse_value, settings_from_config
from planner.sim import Quota

EXIT_OK, EXIT_USAGE = 0, 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sdq plan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="config.yaml (default: $CDK_CONFIG_PATH or ./config.yaml)")
    p.add_argument("--runtime", help="runtime to plan (default: the first in modelsRuntime)")
    load = p.add_argument_group("traffic")
    load.add_argument("--images", type=int, default=1_000_000, help="images in the period (default 1,000,000)")
    load.add_argument("--days", type=float, default=30.0, help="length of the period (default 30)")
    load.add_argument("--arrival", choices=traffic.ARRIVALS, default="steady")
    load.add_argument("--trace", type=Path, help="CSV of submit timestamps (one per line) instead of --images")
    load.add_argument("--images-per-task", type=int, default=1, help="batch_size x n_iter of each request")
    load.add_argument("--seed", type=int, default=0)
    model = p.add_argument_group("model and timings")
    model.add_argument("--seconds-per-image", type=float, help="GPU seconds per image (default: the table)")
    model.add_argument("--batching-gain", type=float, default=1.0,
                       help="throughput factor of merged batches with 2+ calls in flight (default 1: none)")
    model.add_argument("--timing", action="append", default=[], metavar="NAME=VALUE",
                       help="override a timing: " + ", ".join(f.name for f in fields(Timings)))
    model.add_argument("--interruptions-per-hour", type=float, help="spot reclaims per spot node-hour")
    p.add_argument("--quota", metavar="SPOT[,ON_DEMAND]",
                   help="G and VT vCPU quotas (e.g. 64 or 64,32); the plan warns where they bind")
    p.add_argument("--prices", type=Path, help="JSON price overrides (shape of planner/data/prices-*.json)")
    p.add_argument("--assume-full-utilization", action="store_true",
                   help="also print the sample's arithmetic: GPU busy every paid hour, no NAT")
    p.add_argument("--sweep", metavar="KEY=V1,V2,...",
                   help="plan once per value, e.g. runtime.scaling.queueLength=1,5,10,20")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config.yaml key (runtime.*/karpenter.* go to the runtime's extraValues)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="draw queue, pods, nodes and latency over time")
    return p


class UsageError(Exception):
    pass


def _pair(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"{flag} takes KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _timings(args: argparse.Namespace) -> Timings:
    timings = Timings()
    known = {f.name for f in fields(Timings)}
    for item in args.timing:
        name, value = _pair(item, "--timing")
        if name not in known:
            raise UsageError(f"--timing: unknown name {name!r} (known: {', '.join(sorted(known))})")
        timings = replace(timings, **{name: float(value)})
    if args.interruptions_per_hour is not None:
        timings = replace(timings, interruptions_per_hour=args.interruptions_per_hour)
    return timings


def _quota(text: str | None) -> Quota | None:
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--quota takes SPOT[,ON_DEMAND] vCPU counts, got {text!r}") from None
    return Quota(numbers[0], numbers[1] if len(numbers) > 1 else None)


def _traffic(args: argparse.Namespace) -> Traffic:
    if args.trace:
        times = traffic.read_trace(args.trace)
        days = max(times[-1] / traffic.DAY, 1.0 / 24.0) if times else args.days
        return Traffic(times, days, f"trace {args.trace.name}")
    return Traffic(traffic.generate(args.arrival, args.images, args.days, args.seed), args.days, args.arrival)


def plan_once(raw: dict[str, Any], args: argparse.Namespace, load: Traffic) -> PlanResult:
    config = parse_config(raw, source=str(args.config or config_path()))
    settings = settings_from_config(config, args.runtime, seconds_per_image=args.seconds_per_image,
                                    images_per_task=args.images_per_task, timings=_timings(args))
    if args.batching_gain != 1.0:
        settings = replace(settings, workload=replace(settings.workload, batching_gain=args.batching_gain))
    return run_plan(settings, load_prices(args.prices), load, seed=args.seed, quota=_quota(args.quota),
                    assume_full_utilization=args.assume_full_utilization)


def _runtime_index(raw: dict[str, Any], name: str | None) -> int:
    if not name:
        return 0
    for index, runtime in enumerate(raw.get("modelsRuntime") or []):
        if str(runtime.get("name", "")).lower() == name:
            return index
    raise UsageError(f"--runtime: no runtime {name!r} in the config")


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = parser().parse_args(argv)
    try:
        raw = load_raw(args.config or config_path())
        index = _runtime_index(raw, args.runtime)
        for item in args.set:
            key, value = _pair(item, "--set")
            raw = apply_override(raw, key, parse_value(value), index)
        load = _traffic(args)
        if args.sweep:
            key, values = _pair(args.sweep, "--sweep")
            rows = [(v, plan_once(apply_override(raw, key, parse_value(v), index), args, load))
                    for v in values.split(",")]
            if args.json:
                json.dump({"key": key, "plans": [{"value": v, **r.as_dict()} for v, r in rows]}, out, indent=2)
                out.write("\n")
            else:
                out.write(report.sweep_table(key, rows) + "\n")
            return EXIT_OK
        result = plan_once(raw, args, load)
    except ConfigError as exc:
        err.write(f"sdq plan: {exc}\n")
        return EXIT_USAGE
    except (UsageError, ValueError, KeyError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        err.write(f"sdq plan: {message}\n")
        return EXIT_USAGE
    if args.json:
        json.dump(result.as_dict(), out, indent=2)
        out.write("\n")
    else:
        out.write(report.table(result) + "\n")
    if args.plot:
        report.plot(result, args.plot)
        err.write(f"sdq plan: wrote {args.plot}\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
