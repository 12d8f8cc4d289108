"""``LocalStack``: the whole pipeline on one machine, from one supervisor.

moto (SQS, SNS, S3, DynamoDB) on loopback with the config's resources, the local API gateway
invoking the real Lambda handlers, and per configured runtime the real runtime and the real
queue agent. ``up()`` starts everything and waits until it answers; ``down()`` stops it in an
order that loses nothing (agents drain first). Every component logs into one file.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract import new_secret
from infra.config import DeploymentConfig, RuntimeConfig, load_config, runtime_catalog
from local_stack.logs import LogSink
from local_stack.models import GeneratedModel, example_prompts, resolve_model_dir
from local_stack.moto_server import FAKE_AWS_ENV
from local_stack.ports import free_port
from local_stack.processes import ManagedProcess, StartError, stop_all
from local_stack.resources import StackResources, create_resources

WEB_DIR = Path(__file__).resolve().parent / "web"
# The repository root: children import the project's packages from here, whatever the caller's cwd.
SOURCE_ROOT = Path(__file__).resolve().parent.parent
# moto's successful requests (werkzeug access lines); failures stay in the log.
_MOTO_ACCESS_OK = re.compile(r'"[A-Z]+ \S+ HTTP/1\.[01]" [23]\d\d ')
# Runtime types whose local stand-in is our own inference_api (both speak the AUTOMATIC1111 API).
LOCAL_RUNTIME_TYPES = frozenset({"sdwebui", "diffusers"})


@dataclass
class StackOptions:
    config_path: Path | None = None
    model_dir: Path | None = None
    workdir: Path = Path(".local-stack")
    # Without model_dir/$MODEL_DIR: the generated model served, toy-world (trained once) or tiny (random).
    generated_model: GeneratedModel = "toy"
    # Where the tiny model is cached (default: workdir/models); tests share the repository's cache.
    model_cache: Path | None = None
    # Where the toy-world model is cached (default: workdir/toy-model).
    toy_cache: Path | None = None
    host: str = "127.0.0.1"
    api_port: int = 0
    console: bool = False
    start_timeout: float = 240.0
    # Extra environment per component kind ("agent", "runtime", "gateway"), e.g. shorter polls in tests.
    extra_env: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class RuntimeSlot:
    config: RuntimeConfig
    port: int
    metrics_port: int
    runtime: ManagedProcess
    agent: ManagedProcess

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class LocalStack:
    """Use as a context manager, or call ``up()`` and ``down()`` (``down`` also runs at interpreter exit)."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.workdir = self.options.workdir.resolve()
        self.api_key = secrets.token_urlsafe(24)
        self.webhook_secret = new_secret()
        # Tenant name -> key: one per api.keys entry of config.yaml (the first is ``api_key``), else one "default".
        self.api_keys: dict[str, str] = {"default": self.api_key}
        self.config: DeploymentConfig | None = None
        self.resources: StackResources | None = None
        self.model_dir: Path | None = None
        self.tiny_model = False  # True when serving the generated random-weight model (its images are noise)
        self.skipped: list[str] = []
        self.slots: list[RuntimeSlot] = []
        self._moto: ManagedProcess | None = None
        self._gateway: ManagedProcess | None = None
        self._moto_port = 0
        self._api_port = 0
        self._sink: LogSink | None = None
        self._up = False

    # ---- addresses -------------------------------------------------------------------------------

    @property
    def sink(self) -> LogSink:
        if self._sink is None:
            raise RuntimeError("the stack is not up")
        return self._sink

    @property
    def log_path(self) -> Path:
        return self.workdir / "logs" / "stack.log"

    @property
    def aws_endpoint(self) -> str:
        return f"http://{self.options.host}:{self._moto_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.options.host}:{self._api_port}"

    @property
    def runtime_names(self) -> list[str]:
        return [slot.config.name for slot in self.slots]

    @property
    def page_url(self) -> str:
        """The web page, with the key and runtimes in the fragment (never sent to the server)."""
        return f"{self.api_url}/#key={self.api_key}&runtimes={','.join(self.runtime_names)}"

    def aws_env(self) -> dict[str, str]:
        """Environment for a client process (or this one) that should talk to the stack's moto server."""
        return {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": self.aws_endpoint}

    def _child_env(self, kind: str, **values: str) -> dict[str, str]:
        pythonpath = os.pathsep.join(p for p in (str(SOURCE_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        # None of the user's AWS settings (profile, real keys, per-service endpoints such as
        # AWS_ENDPOINT_URL_S3) reach a local component: it talks to moto and nothing else.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.aws_env(), PYTHONUNBUFFERED="1", PYTHONPATH=pythonpath, **values)
        env.update(self.options.extra_env.get(kind, {}))
        return env

    # ---- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> LocalStack:
        if self._up:
            return self
        self._up = True
        atexit.register(self.down)
        try:
            self._start()
        except BaseException:
            self.down()
            raise
        return self

    def _start(self) -> None:
        started = time.monotonic()
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.log_path.unlink(missing_ok=True)  # one run, one log: no stale lines from the last run
        self._sink = LogSink(self.log_path, console=sys.stderr if self.options.console else None)
        cfg = load_config(self.options.config_path)
        self.config = cfg
        if cfg.api.keys:
            self.api_keys = {t.name: secrets.token_urlsafe(24) for t in cfg.api.keys}
            self.api_key = next(iter(self.api_keys.values()))
        runnable = [r for r in cfg.models_runtime if r.type in LOCAL_RUNTIME_TYPES]
        self.skipped = [r.name for r in cfg.models_runtime if r.type not in LOCAL_RUNTIME_TYPES]
        for name in self.skipped:
            self.sink.write("stack", f"skipping runtime {name!r}: type comfyui has no local stand-in yet")
        if not runnable:
            raise StartError("config.yaml has no sdwebui or diffusers runtime the local stack can run")

        caches: dict[GeneratedModel, Path] = {
            "tiny": (self.options.model_cache or self.workdir / "models").resolve(),
            "toy": (self.options.toy_cache or self.workdir / "toy-model").resolve(),
        }
        generated = self.options.generated_model
        self.model_dir = resolve_model_dir(
            self.options.model_dir,
            caches,
            generated,
            self.sink,
            self._child_env("runtime"),  # type: ignore[arg-type]
        )
        self.tiny_model = generated == "tiny" and self.model_dir == caches["tiny"]
        self._moto_port = free_port(self.options.host)
        self._moto = ManagedProcess(
            "moto",
            [sys.executable, "-m", "moto.server", "-H", self.options.host, "-p", str(self._moto_port)],
            # The local AWS answers only this machine's tools: no CORS headers for whatever page a browser shows.
            self._child_env("moto", MOTO_DISABLE_GLOBAL_CORS="true"),
            self.sink,
            drop_lines=_MOTO_ACCESS_OK,
        ).start()
        # Runtimes load their model while moto starts and the resources are created: it is the slow part.
        runtime_ports = {r.name: free_port(self.options.host) for r in runnable}
        runtimes = {r.name: self._runtime_process(r, runtime_ports[r.name]).start() for r in runnable}

        self._moto.wait_http(f"{self.aws_endpoint}/moto-api/", self.options.start_timeout)
        self.resources = create_resources(cfg, self.aws_endpoint)
        self.sink.write("stack", f"created the resources of stack {cfg.stack_name!r} in moto")

        self._api_port = self.options.api_port or free_port(self.options.host)
        self._gateway = self._gateway_process([r.name for r in runnable]).start()
        for runtime in runnable:
            metrics_port = free_port(self.options.host)
            agent = self._agent_process(runtime, runtime_ports[runtime.name], metrics_port).start()
            self.slots.append(
                RuntimeSlot(runtime, runtime_ports[runtime.name], metrics_port, runtimes[runtime.name], agent)
            )

        timeout = self.options.start_timeout
        # The gateway imports the handlers before it listens: once it serves the page, the API is ready too.
        self._gateway.wait_http(f"{self.api_url}/", timeout)
        for slot in self.slots:
            slot.runtime.wait_http(f"{slot.base_url}/ready", timeout)
            slot.agent.wait_http(f"http://127.0.0.1:{slot.metrics_port}/healthz", timeout)
        self.sink.write("stack", f"up in {time.monotonic() - started:.1f}s: API {self.api_url}")

    def down(self) -> None:
        if not self._up:
            return
        self._up = False
        atexit.unregister(self.down)
        # Agents first: on SIGTERM they stop receiving, hand prefetched messages back and finish the
        # running job, which needs the runtime, moto and the gateway still up.
        stop_all([slot.agent for slot in self.slots], timeout=60)
        rest = [slot.runtime for slot in self.slots] + [p for p in (self._gateway, self._moto) if p is not None]
        stop_all(rest, timeout=15)
        self.slots = []
        self._gateway = self._moto = None
        if self._sink is not None:
            self._sink.write("stack", "down")
            self._sink.close()
            self._sink = None

    # ---- components ------------------------------------------------------------------------------

    def _runtime_process(self, runtime: RuntimeConfig, port: int) -> ManagedProcess:
        assert self.model_dir is not None
        argv = [sys.executable, "-m", "inference_api", "serve", "--models", str(self.model_dir)]
        argv += ["--port", str(port), "--host", "127.0.0.1"]
        return ManagedProcess(f"runtime:{runtime.name}", argv, self._child_env("runtime"), self.sink)

    def _agent_process(self, runtime: RuntimeConfig, runtime_port: int, metrics_port: int) -> ManagedProcess:
        assert self.resources is not None and self.config is not None
        queue = self.resources.runtimes[runtime.name]
        env = self._child_env(
            "agent",
            SQS_QUEUE_URL=queue.queue_url,
            SNS_TOPIC_ARN=self.resources.results_topic_arn,
            S3_BUCKET=self.resources.bucket,
            RUNTIME_TYPE=runtime.type,
            RUNTIME_NAME=runtime.name,
            API_BASE_URL=f"http://127.0.0.1:{runtime_port}/sdapi/v1/",
            DYNAMIC_SD_MODEL="true" if runtime.dynamic_model else "false",
            LOGLEVEL=os.environ.get("LOGLEVEL", "INFO"),
            DISABLE_XRAY="true",
            STATUS_TABLE=self.resources.table,
            METRICS_HOST="127.0.0.1",
            METRICS_PORT=str(metrics_port),
            JOB_TIMEOUT_SECONDS=str(self.config.job_timeout_seconds),
            ALLOWED_INPUT_BUCKETS=",".join([self.resources.bucket, *self.resources.input_buckets]),
            SQS_HIGH_QUEUE_URL=queue.high_queue_url,
            # Through the environment, never argv. Local webhook receivers live on loopback.
            WEBHOOK_SECRET=self.webhook_secret,
            WEBHOOK_ALLOW_LOOPBACK="true",
        )
        return ManagedProcess(f"agent:{runtime.name}", [sys.executable, "-m", "queue_agent"], env, self.sink)

    def _gateway_process(self, runtimes: list[str]) -> ManagedProcess:
        assert self.resources is not None and self.config is not None
        env = self._child_env(
            "gateway",
            TASKS_TOPIC_ARN=self.resources.tasks_topic_arn,
            STATUS_TABLE=self.resources.table,
            OUTPUT_BUCKET=self.resources.bucket,
            INPUT_BUCKETS=",".join(self.resources.input_buckets),
            WEBHOOK_ALLOW_LOOPBACK="true",
            RUNTIMES=",".join(runtimes),
            RUNTIME_CATALOG=runtime_catalog(self.config, runtimes),
            STATUS_TTL_DAYS=str(self.config.outputs.status_ttl_days),
            # Through the environment, not argv: the command line of a process is visible to every user.
            # Each tenant's key, with the tenant's name as the key id the handlers see.
            GATEWAY_API_KEYS=json.dumps({key: name for name, key in self.api_keys.items()}),
        )
        argv = [sys.executable, "-m", "local_stack.gateway", "--host", self.options.host]
        # The page, then what it reads about the served models: the prompts they suggest.
        page_data = self.workdir / "page-data"
        page_data.mkdir(parents=True, exist_ok=True)
        assert self.model_dir is not None
        examples = {"examples": example_prompts(self.model_dir)}
        (page_data / "examples.json").write_text(json.dumps(examples, indent=2) + "\n")
        argv += ["--port", str(self._api_port), "--static", str(WEB_DIR), "--static", str(page_data)]
        return ManagedProcess("gateway", argv, env, self.sink)

    def describe(self) -> dict[str, Any]:
        """What scripts need to reach the running stack (the API key included: keep it local)."""
        return {
            "endpoint": self.api_url,
            "api_key": self.api_key,
            "api_keys": dict(self.api_keys),
            "runtimes": self.runtime_names,
            "page": f"{self.api_url}/",
            "aws_endpoint": self.aws_endpoint,
            # Verifies the signatures of this stack's webhook deliveries (`sdq webhook-secret`).
            "webhook_secret": self.webhook_secret,
            "log": str(self.log_path),
        }
