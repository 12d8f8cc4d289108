"""Model selection: the catalog, the current model, and the cache of loaded pipelines.

Loading runs on the worker thread; the current model is read from anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import torch

from inference_api.cache import LruCache
from inference_api.catalog import Catalog, ModelEntry, file_sha256
from inference_api.containment import PipelineState, is_out_of_memory, release_memory
from inference_api.errors import InferenceError, ModelLoadFailed, NotReady, OutOfMemory, invalid_field
from inference_api.loading import DeviceSettings, LoadedModel, free, load_model
from inference_api.settings import ServerSettings
from inference_api.worker import Worker

log = logging.getLogger(__name__)


class ModelSelection:
    def __init__(self, settings: ServerSettings, device: DeviceSettings, worker: Worker) -> None:
        self.settings = settings
        self.device = device
        self._worker = worker
        self.catalog = Catalog(settings.models_dir)
        self.cache: LruCache[LoadedModel] = LruCache(settings.cache_size, on_evict=self._evicted)
        self._baselines: dict[str, PipelineState] = {}
        # Models loaded since start (or the last unload): one evicted since is reloaded on demand, at once.
        self._loaded_once: set[str] = set()
        self.hashes: dict[str, str] = {}  # single-file model name -> sha256, computed after its first load
        self._lock = threading.Lock()
        self._current: ModelEntry | None = None
        self.load_error: str | None = None

    @property
    def current(self) -> ModelEntry | None:
        with self._lock:
            return self._current

    def select(self, entry: ModelEntry) -> None:
        with self._lock:
            self._current = entry

    def select_default(self) -> None:
        wanted = self.settings.default_model
        entry = self.catalog.find(wanted) if wanted else None
        if wanted and entry is None:
            log.error("default model %r not found in %s", wanted, self.settings.models_dir)
        models = self.catalog.models
        with self._lock:
            if entry is None and self._current is None and models and not wanted:
                entry = models[0]
            if entry is not None:
                self._current = entry

    def is_loaded(self, entry: ModelEntry | None) -> bool:
        return entry is not None and entry.name in self.cache

    def was_loaded(self, entry: ModelEntry | None) -> bool:
        return entry is not None and entry.name in self._loaded_once

    def find(self, name: str, field: str) -> ModelEntry:
        entry = self.catalog.find(name)
        if entry is None:
            available = ", ".join(m.title for m in self.catalog.models) or "(none)"
            raise invalid_field(field, "one_of", f"unknown model {name!r}; available: {available}")
        return entry

    def ensure_loaded(self, entry: ModelEntry) -> LoadedModel:
        """The loaded model, loading it first (evicting the least recently used). Worker thread only."""
        loaded = self.cache.get(entry.name)
        if loaded is not None:
            return loaded
        self.cache.make_room()
        started = time.monotonic()
        loaded = load_model(entry, self.settings.models_dir, self.device)
        self._baselines[entry.name] = PipelineState.capture(loaded.text2img.components)
        self.cache.put(entry.name, loaded, time.monotonic() - started)
        self._loaded_once.add(entry.name)
        if entry.kind == "single_file" and entry.name not in self.hashes:
            # As A1111 hashes a checkpoint when it loads it; off the worker (the file is in the page cache now).
            threading.Thread(target=self._hash, args=(entry,), name="model-hash", daemon=True).start()
        self.load_error = None
        log.info("loaded %s in %.2fs", entry.name, time.monotonic() - started)
        return loaded

    def _hash(self, entry: ModelEntry) -> None:
        try:
            self.hashes[entry.name] = file_sha256(entry.path)
        except OSError:
            log.warning("could not hash %s", entry.name)

    def _evicted(self, loaded: LoadedModel) -> None:
        self._baselines.pop(loaded.entry.name, None)
        free(loaded)
        if self.device.compile:
            # Compiled graphs hold the evicted model's weights and shapes; the next model compiles afresh.
            torch._dynamo.reset()

    def restore_or_evict(self, entry: ModelEntry) -> str:
        """After a failed generation: put the model back as it was loaded, or drop it to be reloaded.

        Returns what was done ("intact", "restored" or "evicted"). Worker thread only.
        """
        loaded = self.cache.peek(entry.name)
        baseline = self._baselines.get(entry.name)
        if loaded is None or baseline is None:
            return "intact"
        components = loaded.text2img.components
        try:
            drift = baseline.drift(components)
            if not drift:
                return "intact"
            log.warning("a failed generation left %s changed (%s); restoring", entry.name, "; ".join(drift))
            baseline.restore(components)
            if not baseline.drift(components):
                return "restored"
        except Exception:
            log.exception("restoring %s failed", entry.name)
        log.warning("%s could not be restored; evicting it (the next request reloads it)", entry.name)
        self.cache.evict(entry.name)
        return "evicted"

    def evict_others(self, entry: ModelEntry) -> int:
        """Free every loaded model but ``entry`` (a request that ran out of memory gets the whole device)."""
        return sum(self.cache.evict(name) for name in self.cache.names() if name != entry.name)

    def load_in_worker(self, entry: ModelEntry) -> LoadedModel:
        """:meth:`ensure_loaded` with failures turned into domain errors. Worker thread only."""
        try:
            return self.ensure_loaded(entry)
        except InferenceError:
            raise
        except Exception as exc:
            if is_out_of_memory(exc):
                release_memory()
                raise OutOfMemory("the accelerator ran out of memory loading the model; retry later") from exc
            log.exception("loading %s failed", entry.name)
            self.load_error = f"{type(exc).__name__}: {exc}"
            raise ModelLoadFailed(f"could not load {entry.name}: {type(exc).__name__}") from exc

    async def load(self, entry: ModelEntry) -> LoadedModel:
        return await self._worker.run(self.load_in_worker, entry)

    async def switch(self, name: str, field: str = "sd_model_checkpoint") -> ModelEntry:
        entry = self.find(name, field)
        await self.load(entry)
        self.select(entry)
        return entry

    async def refresh(self) -> None:
        await asyncio.to_thread(self.catalog.refresh)
        self.select_default()

    async def unload(self) -> int:
        self._loaded_once.clear()
        return await self._worker.run(self.cache.clear)

    async def reload(self) -> None:
        current = self.current
        if current is None:
            raise NotReady("no model is selected")
        await self.load(current)
