"""What a simulated period costs, line by line; and the replaced sample's full-utilisation estimate."""

from __future__ import annotations

from dataclasses import dataclass

from planner.prices import HOURS_PER_MONTH, PriceTable
from planner.settings import PlanSettings
from planner.sim import Outcome

GIB = 1024**3
KIB = 1024


@dataclass(frozen=True)
class Usage:
    """Per-request quantities the price table multiplies. Defaults are the sample's guide's assumptions."""

    lambda_gb_seconds_per_request: float = 0.0125  # the sample: 12,500 GB-s per 1M requests
    sns_kib_per_image: float = 8.0  # the sample: 7.62 GB of SNS data per 1M images
    image_kib: float = 150.0  # the sample: 150 KB per image
    storage_months: float = 1.0  # outputs kept a month (statusTtlDays 30 expires them with their records)
    dynamodb_writes_per_task: int = 3  # queued, running, terminal (ours; the sample had no status table)


@dataclass(frozen=True)
class CostLine:
    item: str
    quantity: float
    unit: str
    unit_price: float
    usd: float
    fixed: bool

    def as_dict(self) -> dict[str, object]:
        return {"item": self.item, "quantity": round(self.quantity, 4), "unit": self.unit,
                "unit_price": self.unit_price, "usd": round(self.usd, 4), "fixed": self.fixed}


@dataclass(frozen=True)
class Costs:
    lines: tuple[CostLine, ...]

    @property
    def variable(self) -> float:
        return sum(line.usd for line in self.lines if not line.fixed)

    @property
    def fixed(self) -> float:
        return sum(line.usd for line in self.lines if line.fixed)

    @property
    def total(self) -> float:
        return self.variable + self.fixed


def _line(item: str, quantity: float, unit: str, price: float, *, per: float = 1.0, fixed: bool = False) -> CostLine:
    return CostLine(item, quantity, unit, price, quantity / per * price, fixed)


def fixed_lines(settings: PlanSettings, prices: PriceTable, hours: float, *, nat: bool) -> list[CostLine]:
    system = prices.instance(settings.system_instance_type)
    lines = [
        _line("EKS control plane", hours, "h", prices["eks_cluster_hour"], fixed=True),
        _line(f"system nodes ({settings.system_nodes} x {system.name}, on-demand)",
              hours * settings.system_nodes, "h", system.on_demand, fixed=True),
    ]
    if nat:
        lines.append(_line(f"NAT gateway x {settings.nat_gateways}", hours * settings.nat_gateways, "h",
                           prices["nat_gateway_hour"], fixed=True))
    return lines


def request_lines(
    prices: PriceTable, usage: Usage, *, requests: int, images: int, sns_publishes: int, sqs_requests: int,
    s3_puts: int, dynamodb_writes: int | None,
) -> list[CostLine]:
    lines = [
        _line("API Gateway REST requests", requests, "requests", prices["api_gateway_rest_per_million"], per=1e6),
        _line("Lambda requests", requests, "requests", prices["lambda_per_million"], per=1e6),
        _line("Lambda compute", requests * usage.lambda_gb_seconds_per_request, "GB-s",
              prices["lambda_gb_second"]),
        _line("SNS publishes", sns_publishes, "requests", prices["sns_publish_per_million"], per=1e6),
        _line("SNS data", images * usage.sns_kib_per_image * KIB / GIB, "GB", prices["sns_data_gb"]),
        _line("SQS requests", sqs_requests, "requests", prices["sqs_per_million"], per=1e6),
        _line("S3 PUT", s3_puts, "requests", prices["s3_put_per_thousand"], per=1e3),
        _line("S3 storage", images * usage.image_kib * KIB / GIB * usage.storage_months, "GB-month",
              prices["s3_gb_month"]),
    ]
    if dynamodb_writes is not None:
        lines.append(_line("DynamoDB writes (status)", dynamodb_writes, "requests",
                           prices["dynamodb_write_per_million"], per=1e6))
    return lines


def full_utilization(settings: PlanSettings, prices: PriceTable, images: int, seconds_per_image: float,
                     days: float, usage: Usage | None = None) -> Costs:
    """The sample's arithmetic: GPU hours = images x seconds per image, paid at spot, busy 100 % of the time;
    two SNS, SQS and S3 requests per image; EKS and the system nodes as the only fixed costs."""
    usage = usage or Usage()
    spot = settings.fleet.spot
    gpu = min((prices.instance(n) for n in settings.fleet.instance_types), key=lambda i: (i.hourly(spot), i.name))
    gpu_hours = images * seconds_per_image / 3600.0
    lines = [_line(f"EC2 {gpu.name} {'spot' if spot else 'on-demand'}", gpu_hours, "h", gpu.hourly(spot))]
    lines += request_lines(prices, usage, requests=images, images=images, sns_publishes=2 * images,
                           sqs_requests=2 * images, s3_puts=2 * images, dynamodb_writes=None)
    lines += fixed_lines(settings, prices, days * 24.0 if days else HOURS_PER_MONTH, nat=False)
    return Costs(tuple(lines))


def simulated(settings: PlanSettings, prices: PriceTable, outcome: Outcome, days: float,
              usage: Usage | None = None) -> Costs:
    usage = usage or Usage()
    lines = []
    for (name, spot), seconds in sorted(outcome.node_seconds.items()):
        instance = prices.instance(name)
        lines.append(_line(f"EC2 {name} {'spot' if spot else 'on-demand'}", seconds / 3600.0, "h",
                           instance.hourly(spot)))
    images = outcome.completed * settings.workload.images_per_task
    lines += request_lines(
        prices, usage,
        requests=outcome.accepted,
        images=images,
        sns_publishes=outcome.accepted + outcome.completed,
        sqs_requests=outcome.sqs_requests,
        s3_puts=images + outcome.completed,
        dynamodb_writes=outcome.accepted * usage.dynamodb_writes_per_task,
    )
    if outcome.image_pulls and settings.pulls_through_nat:
        pulled = outcome.image_pulls * settings.timings.image_gb
        lines.append(_line("NAT data (runtime image pulls from a public registry)", pulled, "GB",
                           prices["nat_gateway_gb"]))
    lines += fixed_lines(settings, prices, days * 24.0, nat=True)
    return Costs(tuple(lines))


def cold_start_usd(settings: PlanSettings, prices: PriceTable) -> float:
    """What one scale-from-zero cycle costs beyond the work: the idle tail before the node goes (cooldown,
    consolidateAfter, shutdown), the paid start (launch, pull, model load) and the image through the NAT."""
    t, fleet = settings.timings, settings.fleet
    hourly = min(prices.instance(n).hourly(fleet.spot) for n in fleet.instance_types)
    seconds = (settings.scaling.cooldown_seconds + settings.scaling.polling_seconds + fleet.consolidate_after_seconds
               + t.node_shutdown_seconds + t.node_launch_seconds + t.image_pull_seconds + t.model_load_seconds)
    nat = t.image_gb * prices["nat_gateway_gb"] if settings.pulls_through_nat else 0.0
    return seconds / 3600.0 * hourly + nat
