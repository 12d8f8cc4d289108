"""Discrete-event simulation of one runtime's fleet, mechanism by mechanism.

1. **SQS**: accepted requests become visible messages; a receive raises the receive count, and past
   ``maxReceiveCount`` the message goes to the DLQ. Messages held by a pod that dies without handing them back
   become visible again after the visibility timeout.
2. **Agent**: a ready pod holds up to ``in_flight + prefetch`` messages and runs them one after another on its
   GPU (with one call in flight the GPU idles for one round trip per job). On SIGTERM it stops receiving, lets
   the jobs already at the runtime finish and hands the prefetched ones back.
3. **KEDA**: every ``pollingInterval`` it reads visible (+ in-flight) messages, wakes the Deployment from zero
   and sends it back to zero ``cooldownPeriod`` after the last activity.
4. **HPA**: every 15 s, ``ceil(metric / queueLength)`` within the 10 % tolerance, stabilisation windows and
   scale-up/scale-down policies (Kubernetes defaults unless ``extraHPAConfig`` sets them).
5. **Karpenter**: one GPU node per pod, the cheapest allowed instance type, spot first with on-demand
   fallback, node launch time, ``WhenEmpty`` consolidation after ``consolidateAfter``, the NodePool GPU limit
   and optional vCPU quotas.
6. **Pod start**: image pull (fast with the data-volume snapshot or on a node that already has the images)
   and model load.
7. **Spot interruptions**: a two-minute notice drains the pod, a replacement is scheduled at once, and the
   node goes at the end of the notice.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from array import array
from collections import deque
from dataclasses import dataclass, field

from planner.prices import InstancePrice, PriceTable, image_time
from planner.settings import HPA_SYNC_SECONDS, HpaRules, PlanSettings

SPOT_NOTICE_SECONDS = 120.0
SAMPLE_SECONDS = 60.0
LONG_POLL_SECONDS = 20.0
# The drain after the last arrival is bounded: a fleet that cannot catch up within a day is reported as such.
DRAIN_LIMIT_SECONDS = 86_400.0

(NODE_READY, POD_READY, JOB_DONE, KEDA_POLL, HPA_SYNC, EMPTY_CHECK, INTERRUPT, NODE_GONE, VISIBLE,
 SAMPLE, LAUNCH_RETRY) = range(11)

PENDING, STARTING, READY, DRAINING, GONE = range(5)


@dataclass(eq=False, slots=True)
class Node:
    id: int
    instance: InstancePrice
    spot: bool
    launched: float
    ready_at: float
    ready: bool = False
    pod: Pod | None = None
    has_images: bool = False
    terminating: bool = False
    gone: bool = False
    empty_since: float | None = None


@dataclass(eq=False, slots=True)
class Pod:
    id: int
    state: int = PENDING
    node: Node | None = None
    held: deque[list[float]] = field(default_factory=deque)
    running: list[float] | None = None
    idle_since: float | None = None


@dataclass(frozen=True)
class Quota:
    spot_vcpus: int | None = None
    on_demand_vcpus: int | None = None


@dataclass
class Timeline:
    t: array = field(default_factory=lambda: array("d"))
    visible: array = field(default_factory=lambda: array("d"))
    in_flight: array = field(default_factory=lambda: array("d"))
    pods: array = field(default_factory=lambda: array("d"))
    nodes: array = field(default_factory=lambda: array("d"))
    replicas: list[tuple[float, int]] = field(default_factory=list)  # every change of the desired count


@dataclass
class Outcome:
    """What one simulated period produced; costs are computed from it in ``planner.costs``."""

    accepted: int
    completed: int
    dead_lettered: int
    latencies: array  # seconds, submit to notification, per completed task
    completion_times: array
    busy_seconds: float
    node_seconds: dict[tuple[str, bool], float]  # (instance type, spot) -> billed seconds
    node_launches: int
    interruptions: int
    nodes_max: int
    nodes_mean: float
    pods_max: int
    backlog_max: int
    end_time: float
    sqs_requests: int
    image_pulls: int
    seconds_per_image: float
    image_time_source: str
    binds: set[str]  # limits that held work back: "maxReplicaCount", "nodepool", "quota", "capacity"
    timeline: Timeline


class Simulation:
    def __init__(
        self,
        settings: PlanSettings,
        prices: PriceTable,
        arrivals: list[float],
        *,
        horizon: float,
        seed: int = 0,
        quota: Quota | None = None,
    ) -> None:
        self.s = settings
        self.prices = prices
        self.arrivals = arrivals
        self.horizon = horizon
        self.rng = random.Random(seed ^ 0x5EED)
        self.quota = quota or Quota()
        fleet = settings.fleet
        if not fleet.instance_types:
            raise ValueError("karpenter.provisioner.instanceType lists no instance type to plan with")
        self.types = [prices.instance(name) for name in fleet.instance_types]
        cheapest = min(self.types, key=lambda i: (i.hourly(fleet.spot), i.name))
        if settings.workload.seconds_per_image is not None:
            self.per_image = {i.name: settings.workload.seconds_per_image for i in self.types}
            self.time_source = "given with --seconds-per-image"
        else:
            times = {i.name: image_time(settings.workload.model, i.gpu or "") for i in self.types}
            self.per_image = {name: t.seconds for name, t in times.items()}
            self.time_source = times[cheapest.name].source
        self.events: list[tuple[float, int, int, object]] = []
        self.seq = itertools.count()
        self.queue: deque[list[float]] = deque()  # visible messages: [submitted, receives]
        self.in_flight = 0
        self.replicas = 0
        self.pods: dict[Pod, None] = {}  # alive, not draining (ordered set)
        self.draining: dict[Pod, None] = {}
        self.pending: dict[Pod, None] = {}  # waiting for a node
        self.idle: dict[Pod, None] = {}  # ready, nothing held
        self.room: dict[Pod, None] = {}  # ready, can hold more
        self.nodes: dict[Node, None] = {}
        self.node_ids = itertools.count(1)
        self.pod_ids = itertools.count(1)
        self.last_active = -math.inf
        self.recommendations: deque[tuple[float, int]] = deque()
        self.scale_events: deque[tuple[float, int]] = deque()
        # results
        self.latencies = array("d")
        self.completion_times = array("d")
        self.completed = 0
        self.dead_lettered = 0
        self.busy = 0.0
        self.node_seconds: dict[tuple[str, bool], float] = {}
        self.launches = 0
        self.interruptions = 0
        self.pulls = 0
        self.nodes_max = 0
        self.pods_max = 0
        self.backlog_max = 0
        self.sqs_requests = 0
        self.idle_pod_seconds = 0.0
        self.binds: set[str] = set()
        self.timeline = Timeline()
        self.node_time_integral = 0.0
        self.last_node_change = 0.0
        self.now = 0.0

    # -- event plumbing -------------------------------------------------------------------------------------

    def at(self, t: float, kind: int, subject: object = None) -> None:
        heapq.heappush(self.events, (t, next(self.seq), kind, subject))

    def run(self) -> Outcome:
        s = self.s
        self.set_replicas(s.scaling.min_replicas, 0.0)
        self.at(0.0, KEDA_POLL)
        self.at(0.0, HPA_SYNC)
        self.at(0.0, SAMPLE)
        arrivals, n = self.arrivals, len(self.arrivals)
        i = 0
        events = self.events
        t = 0.0
        handlers = {
            NODE_READY: self.on_node_ready, POD_READY: self.on_pod_ready, JOB_DONE: self.on_job_done,
            KEDA_POLL: self.on_keda_poll, HPA_SYNC: self.on_hpa_sync, EMPTY_CHECK: self.on_empty_check,
            INTERRUPT: self.on_interrupt, NODE_GONE: self.on_node_gone, VISIBLE: self.on_visible,
            SAMPLE: self.on_sample, LAUNCH_RETRY: self.on_launch_retry,
        }
        limit = self.horizon + DRAIN_LIMIT_SECONDS
        while True:
            if i < n and (not events or arrivals[i] <= events[0][0]):
                t = self.now = arrivals[i]
                i += 1
                self.on_arrival(t)
                continue
            if not events:
                break
            t, _, kind, subject = heapq.heappop(events)
            if t > limit:
                break
            if t >= self.horizon and i >= n and not self.queue and self.in_flight == 0:
                break
            self.now = t
            handlers[kind](t, subject)
        end = max(self.horizon, min(t, limit))
        for node in list(self.nodes):
            self.bill(node, end)
        self.note_nodes(end)
        return Outcome(
            accepted=n,
            completed=self.completed,
            dead_lettered=self.dead_lettered,
            latencies=self.latencies,
            completion_times=self.completion_times,
            busy_seconds=self.busy,
            node_seconds=self.node_seconds,
            node_launches=self.launches,
            interruptions=self.interruptions,
            nodes_max=self.nodes_max,
            nodes_mean=self.node_time_integral / end if end else 0.0,
            pods_max=self.pods_max,
            backlog_max=self.backlog_max,
            end_time=end,
            sqs_requests=self.sqs_requests + self.polling_requests(end),
            image_pulls=self.pulls,
            seconds_per_image=self.per_image[self.cheapest(self.s.fleet.spot).name],
            image_time_source=self.time_source,
            binds=self.binds,
            timeline=self.timeline,
        )

    def polling_requests(self, end: float) -> int:
        # KEDA reads the queue at every poll and at every HPA sync; idle agents long-poll every 20 s.
        keda = end / self.s.scaling.polling_seconds + end / HPA_SYNC_SECONDS
        return int(keda + self.idle_pod_seconds / LONG_POLL_SECONDS)

    # -- SQS and the agent ----------------------------------------------------------------------------------

    def on_arrival(self, t: float) -> None:
        self.sqs_requests += 1  # SNS delivers into the queue: one SendMessage
        self.queue.append([t, 0.0])
        self.dispatch(t)
        if len(self.queue) > self.backlog_max:
            self.backlog_max = len(self.queue)

    def on_visible(self, t: float, msg: object) -> None:
        assert isinstance(msg, list)
        self.queue.appendleft(msg)
        self.dispatch(t)

    def dispatch(self, t: float) -> None:
        while self.queue and self.room:
            pod = next(iter(self.idle)) if self.idle else next(iter(self.room))
            self.fill(pod, t)

    def fill(self, pod: Pod, t: float) -> None:
        limit = self.s.held_per_pod
        queue = self.queue
        while queue and len(pod.held) + (pod.running is not None) < limit:
            msg = queue.popleft()
            msg[1] += 1
            self.sqs_requests += 1
            if msg[1] > self.s.max_receive_count:
                self.dead_lettered += 1
                continue
            pod.held.append(msg)
            self.in_flight += 1
        self.start_next(pod, t)
        self.refresh(pod)

    def start_next(self, pod: Pod, t: float) -> None:
        if pod.running is not None or not pod.held:
            return
        msg = pod.held.popleft()
        pod.running = msg
        assert pod.node is not None
        per_image = self.per_image[pod.node.instance.name]
        work = per_image * self.s.workload.images_per_task
        if self.s.in_flight >= 2 and pod.held:
            work /= self.s.workload.batching_gain
        gap = self.s.timings.agent_gap_seconds if self.s.in_flight < 2 else 0.0
        self.busy += work
        self.at(t + gap + work, JOB_DONE, pod)

    def refresh(self, pod: Pod) -> None:
        held = len(pod.held) + (pod.running is not None)
        if pod.state == READY and held < self.s.held_per_pod:
            self.room[pod] = None
        else:
            self.room.pop(pod, None)
        if pod.state == READY and held == 0:
            if pod not in self.idle:
                self.idle[pod] = None
                pod.idle_since = self.now
        elif pod in self.idle:
            del self.idle[pod]
            self.idle_pod_seconds += self.now - (pod.idle_since or self.now)

    def on_job_done(self, t: float, pod: object) -> None:
        assert isinstance(pod, Pod)
        msg = pod.running
        assert msg is not None
        pod.running = None
        self.in_flight -= 1
        self.completed += 1
        self.sqs_requests += 1  # DeleteMessage
        done = t + self.s.timings.notify_seconds
        self.latencies.append(done - msg[0])
        self.completion_times.append(done)
        if pod.state == DRAINING:
            if pod.held:
                self.start_next(pod, t)
            else:
                self.pod_gone(pod, t)
            return
        self.fill(pod, t)

    # -- pods and nodes -------------------------------------------------------------------------------------

    def set_replicas(self, wanted: int, t: float) -> None:
        have = len(self.pods)
        if wanted != self.replicas:
            self.scale_events.append((t, wanted - self.replicas))
            self.timeline.replicas.append((t, wanted))
        self.replicas = wanted
        if wanted > have:
            for _ in range(wanted - have):
                self.add_pod(t)
        elif wanted < have:
            self.remove_pods(have - wanted, t)
        self.pods_max = max(self.pods_max, len(self.pods))

    def add_pod(self, t: float) -> None:
        pod = Pod(next(self.pod_ids))
        self.pods[pod] = None
        self.place(pod, t)

    def place(self, pod: Pod, t: float) -> None:
        for node in self.nodes:
            if node.pod is None and not node.terminating:
                self.bind(pod, node, t)
                return
        launched = self.launch(t)
        if launched is None:
            self.pending[pod] = None
            return
        self.bind(pod, launched, t)

    def bind(self, pod: Pod, node: Node, t: float) -> None:
        self.pending.pop(pod, None)
        pod.node = node
        node.pod = pod
        node.empty_since = None
        pod.state = STARTING
        if node.ready:
            self.at(t + self.startup(node), POD_READY, pod)

    def startup(self, node: Node) -> float:
        timings = self.s.timings
        cached = node.has_images or self.s.fleet.snapshot_cache
        if not node.has_images:
            self.pulls += 0 if self.s.fleet.snapshot_cache else 1
        node.has_images = True
        pull = timings.image_pull_cached_seconds if cached else timings.image_pull_seconds
        return pull + timings.model_load_seconds

    def cheapest(self, spot: bool) -> InstancePrice:
        return min(self.types, key=lambda i: (i.hourly(spot), i.name))

    def launch(self, t: float) -> Node | None:
        fleet, timings = self.s.fleet, self.s.timings
        gpus = sum(n.instance.gpus for n in self.nodes if not n.gone)
        spot = fleet.spot and (not fleet.on_demand or self.rng.random() < timings.spot_availability)
        if not spot and not fleet.on_demand:
            self.binds.add("capacity")
            self.at(t + 60.0, LAUNCH_RETRY)
            return None
        instance = self.cheapest(spot)
        if gpus + instance.gpus > fleet.gpu_limit:
            self.binds.add("nodepool")
            return None
        if not self.quota_allows(spot, instance):
            self.binds.add("quota")
            if not (spot and fleet.on_demand):
                return None
            # Spot vCPUs used up: on-demand, within its own quota.
            spot, instance = False, self.cheapest(False)
            if not self.quota_allows(spot, instance):
                return None
        return self.launch_as(t, spot, instance)

    def quota_allows(self, spot: bool, instance: InstancePrice) -> bool:
        cap = self.quota.spot_vcpus if spot else self.quota.on_demand_vcpus
        if cap is None:
            return True
        used = sum(n.instance.vcpus for n in self.nodes if n.spot == spot)
        return used + instance.vcpus <= cap

    def launch_as(self, t: float, spot: bool, instance: InstancePrice) -> Node:
        node = Node(next(self.node_ids), instance, spot, t, t + self.s.timings.node_launch_seconds)
        self.note_nodes(t)
        self.nodes[node] = None
        self.launches += 1
        self.nodes_max = max(self.nodes_max, len(self.nodes))
        self.at(node.ready_at, NODE_READY, node)
        rate = self.s.timings.interruptions_per_hour
        if spot and rate > 0:
            self.at(t + self.rng.expovariate(rate / 3600.0), INTERRUPT, node)
        return node

    def on_launch_retry(self, t: float, _: object) -> None:
        for pod in list(self.pending):
            if pod in self.pods and pod.node is None:
                self.place(pod, t)

    def on_node_ready(self, t: float, node: object) -> None:
        assert isinstance(node, Node)
        if node.gone:
            return
        node.ready = True
        if node.pod is not None:
            self.at(t + self.startup(node), POD_READY, node.pod)
        else:
            self.node_empty(node, t)

    def on_pod_ready(self, t: float, pod: object) -> None:
        assert isinstance(pod, Pod)
        if pod.state != STARTING:
            return
        pod.state = READY
        self.fill(pod, t)
        self.dispatch(t)

    def remove_pods(self, count: int, t: float) -> None:
        def cost(pod: Pod) -> tuple[int, int]:
            order = {PENDING: 0, STARTING: 1, READY: 2}[pod.state]
            return order, len(pod.held) + (pod.running is not None)

        for pod in sorted(self.pods, key=cost)[:count]:
            del self.pods[pod]
            self.pending.pop(pod, None)
            if pod.state in (PENDING, STARTING):
                self.pod_gone(pod, t)
            else:
                self.drain(pod, t)

    def drain(self, pod: Pod, t: float) -> None:
        """SIGTERM: stop receiving; the calls already at the runtime finish, prefetched messages go back."""
        self.pods.pop(pod, None)
        pod.state = DRAINING
        self.refresh(pod)
        at_runtime = max(0, self.s.in_flight - (pod.running is not None))
        while len(pod.held) > at_runtime:
            msg = pod.held.pop()
            self.in_flight -= 1
            self.sqs_requests += 1  # ChangeMessageVisibility 0
            self.queue.appendleft(msg)
        if pod.running is None and not pod.held:
            self.pod_gone(pod, t)
        else:
            self.draining[pod] = None
        self.dispatch(t)

    def pod_gone(self, pod: Pod, t: float) -> None:
        pod.state = GONE
        self.refresh(pod)
        self.draining.pop(pod, None)
        self.pods.pop(pod, None)
        node = pod.node
        pod.node = None
        if node is not None and node.pod is pod:
            node.pod = None
            if not node.gone and not node.terminating and node.ready:
                self.node_empty(node, t)

    def node_empty(self, node: Node, t: float) -> None:
        for pod in self.pending:
            self.bind(pod, node, t)
            return
        node.empty_since = t
        self.at(t + self.s.fleet.consolidate_after_seconds, EMPTY_CHECK, node)

    def on_empty_check(self, t: float, node: object) -> None:
        assert isinstance(node, Node)
        if node.gone or node.pod is not None or node.empty_since is None:
            return
        if t - node.empty_since < self.s.fleet.consolidate_after_seconds - 1e-9:
            return
        self.terminate(node, t + self.s.timings.node_shutdown_seconds)
        self.on_launch_retry(t, None)

    def terminate(self, node: Node, billed_until: float) -> None:
        node.gone = True
        self.bill(node, billed_until)

    def bill(self, node: Node, until: float) -> None:
        if node not in self.nodes:
            return
        self.note_nodes(until)
        del self.nodes[node]
        seconds = max(60.0, until - node.launched)  # EC2 bills at least a minute
        key = (node.instance.name, node.spot)
        self.node_seconds[key] = self.node_seconds.get(key, 0.0) + seconds

    def note_nodes(self, t: float) -> None:
        if t > self.last_node_change:
            self.node_time_integral += len(self.nodes) * (t - self.last_node_change)
            self.last_node_change = t

    def on_interrupt(self, t: float, node: object) -> None:
        assert isinstance(node, Node)
        if node.gone or node.terminating:
            return
        self.interruptions += 1
        node.terminating = True
        self.at(t + SPOT_NOTICE_SECONDS, NODE_GONE, node)
        pod = node.pod
        if pod is not None and pod.state != GONE:
            replaced = pod in self.pods
            if pod.state in (PENDING, STARTING):
                self.pods.pop(pod, None)
                self.pod_gone(pod, t)
            else:
                self.drain(pod, t)
            if replaced:
                self.add_pod(t)

    def on_node_gone(self, t: float, node: object) -> None:
        assert isinstance(node, Node)
        pod = node.pod
        if pod is not None:
            # Work still on the node when it goes: the messages come back after the visibility timeout.
            lost = list(pod.held) + ([pod.running] if pod.running is not None else [])
            pod.held.clear()
            pod.running = None
            for msg in lost:
                self.in_flight -= 1
                self.at(t + self.s.visibility_timeout, VISIBLE, msg)
            self.pod_gone(pod, t)
        self.terminate(node, t)

    # -- KEDA and the HPA ----------------------------------------------------------------------------------

    def metric(self) -> int:
        return len(self.queue) + (self.in_flight if self.s.scaling.count_in_flight else 0)

    def on_keda_poll(self, t: float, _: object) -> None:
        sc = self.s.scaling
        value = self.metric()
        if value > sc.activation_queue_length:
            self.last_active = t
            if self.replicas == 0:
                self.set_replicas(max(1, sc.min_replicas), t)
        elif self.replicas > 0 and sc.min_replicas == 0 and t - self.last_active >= sc.cooldown_seconds:
            self.set_replicas(0, t)
        self.at(t + sc.polling_seconds, KEDA_POLL)

    def on_hpa_sync(self, t: float, _: object) -> None:
        sc = self.s.scaling
        self.at(t + HPA_SYNC_SECONDS, HPA_SYNC)
        current = self.replicas
        if current == 0:
            self.recommendations.clear()
            return
        value = self.metric()
        ratio = value / (sc.queue_length * current)
        desired = current if abs(ratio - 1.0) <= 0.1 else math.ceil(value / sc.queue_length)
        desired = min(max(desired, max(1, sc.min_replicas)), sc.max_replicas)
        if value / sc.queue_length > sc.max_replicas:
            self.binds.add("maxReplicaCount")
        self.recommendations.append((t, desired))
        horizon = max(sc.scale_up.stabilization_seconds, sc.scale_down.stabilization_seconds)
        while self.recommendations and self.recommendations[0][0] < t - horizon:
            self.recommendations.popleft()
        up = min(r for ts, r in self.recommendations if ts >= t - sc.scale_up.stabilization_seconds)
        down = max(r for ts, r in self.recommendations if ts >= t - sc.scale_down.stabilization_seconds)
        if current < up:
            target = min(up, self.limit(sc.scale_up, t, current, up=True))
        elif current > down:
            target = max(down, self.limit(sc.scale_down, t, current, up=False))
        else:
            return
        if target != current:
            self.set_replicas(target, t)

    def limit(self, rules: HpaRules, t: float, current: int, *, up: bool) -> int:
        if rules.select == "Disabled":
            return current
        limits = []
        for policy in rules.policies:
            changed = sum(d for ts, d in self.scale_events if ts > t - policy.period_seconds and (d > 0) == up)
            start = current - changed
            if policy.kind == "Pods":
                limits.append(start + policy.value if up else start - policy.value)
            elif up:
                limits.append(math.ceil(start * (1 + policy.value / 100)))
            else:
                limits.append(math.floor(start * (1 - policy.value / 100)))
        while self.scale_events and self.scale_events[0][0] < t - 3600:
            self.scale_events.popleft()
        pick = max if (rules.select == "Max") == up else min
        return pick(limits)

    def on_sample(self, t: float, _: object) -> None:
        tl = self.timeline
        tl.t.append(t)
        tl.visible.append(len(self.queue))
        tl.in_flight.append(self.in_flight)
        tl.pods.append(sum(1 for p in self.pods if p.state == READY))
        tl.nodes.append(len(self.nodes))
        self.at(t + SAMPLE_SECONDS, SAMPLE)

