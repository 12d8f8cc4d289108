"""Submit times: steady, diurnal or bursty arrivals from a seed, or a trace file; then API Gateway's throttle.

Every generator returns exactly ``images`` sorted times in ``[0, days * 86400)``, in seconds.
"""

from __future__ import annotations

import csv
import heapq
import math
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

DAY = 86_400.0
ARRIVALS = ("steady", "diurnal", "bursty")
# Diurnal: a day's rate swings this much around its mean, peaking at 15:00 (UTC of the trace).
DIURNAL_AMPLITUDE = 0.8
DIURNAL_PEAK_HOUR = 15.0
# Bursty: this share of the traffic comes in bursts of about BURST_SIZE requests within BURST_SECONDS.
BURST_SHARE = 0.8
BURST_SIZE = 200
BURST_SECONDS = 30.0


def steady(count: int, days: float, rng: random.Random) -> list[float]:
    """A Poisson process of constant rate, conditioned on ``count`` arrivals."""
    span = days * DAY
    return sorted(rng.random() * span for _ in range(count))


def diurnal(count: int, days: float, rng: random.Random) -> list[float]:
    span = days * DAY
    peak = 1.0 + DIURNAL_AMPLITUDE
    out: list[float] = []
    while len(out) < count:
        t = rng.random() * span
        phase = 2 * math.pi * ((t / DAY * 24.0 - DIURNAL_PEAK_HOUR) / 24.0)
        if rng.random() * peak <= 1.0 + DIURNAL_AMPLITUDE * math.cos(phase):
            out.append(t)
    out.sort()
    return out


def bursty(count: int, days: float, rng: random.Random) -> list[float]:
    span = days * DAY
    in_bursts = int(count * BURST_SHARE)
    out = [rng.random() * span for _ in range(count - in_bursts)]
    while in_bursts > 0:
        size = min(in_bursts, max(1, int(rng.expovariate(1.0 / BURST_SIZE)) + 1))
        start = rng.random() * max(span - BURST_SECONDS, 1.0)
        out.extend(start + rng.random() * BURST_SECONDS for _ in range(size))
        in_bursts -= size
    out.sort()
    return out


def generate(kind: str, count: int, days: float, seed: int) -> list[float]:
    if kind not in ARRIVALS:
        raise ValueError(f"--arrival must be one of {', '.join(ARRIVALS)}, not {kind!r}")
    if count < 0 or days <= 0:
        raise ValueError("--images must be >= 0 and --days > 0")
    rng = random.Random(seed)
    return {"steady": steady, "diurnal": diurnal, "bursty": bursty}[kind](count, days, rng)


def read_trace(path: Path) -> list[float]:
    """One submit time per line: seconds (any origin) or ISO 8601; a header line is allowed. Times start at 0."""
    times: list[float] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            cell = row[0].strip()
            try:
                times.append(float(cell))
            except ValueError:
                try:
                    times.append(datetime.fromisoformat(cell.replace("Z", "+00:00")).timestamp())
                except ValueError:
                    if times or number > 1:
                        raise ValueError(f"{path}:{number}: not a timestamp: {cell!r}") from None
    if not times:
        raise ValueError(f"{path}: no timestamps")
    times.sort()
    origin = times[0]
    return [t - origin for t in times]


@dataclass(frozen=True)
class Throttled:
    accepted: list[float]  # times the API accepted a request (after client retries)
    rejected: int  # requests still throttled after the last retry
    throttled_calls: int  # 429 answers, retries included


def throttle(
    times: list[float], rate: float, burst: int, *, retries: int = 3, backoff: float = 1.0
) -> Throttled:
    """API Gateway's token bucket (``rateLimit`` per second, ``burstLimit`` deep); a throttled client retries
    after ``backoff * 2**attempt`` seconds, ``retries`` times."""
    tokens = float(burst)
    last = 0.0
    accepted: list[float] = []
    retry_heap: list[tuple[float, int]] = []
    rejected = throttled_calls = 0
    i = 0
    while i < len(times) or retry_heap:
        if retry_heap and (i >= len(times) or retry_heap[0][0] < times[i]):
            t, attempt = heapq.heappop(retry_heap)
        else:
            t, attempt = times[i], 0
            i += 1
        tokens = min(float(burst), tokens + (t - last) * rate)
        last = t
        if tokens >= 1.0:
            tokens -= 1.0
            accepted.append(t)
        else:
            throttled_calls += 1
            if attempt < retries:
                heapq.heappush(retry_heap, (t + backoff * 2**attempt, attempt + 1))
            else:
                rejected += 1
    return Throttled(accepted, rejected, throttled_calls)
