"""AUTOMATIC1111 sampler and schedule names -> diffusers schedulers. The one table of the runtime.

A1111 (>= 1.9) splits the old names ("DPM++ 2M Karras") into a sampler and a ``scheduler`` field
("DPM++ 2M" + "Karras"); both spellings are accepted. Names are matched case-insensitively, and the
k-diffusion aliases ("k_euler_a") work too.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

DEFAULT_SAMPLER = "Euler"  # what A1111's API uses when a request names none


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    scheduler_class: str
    options: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    note: str | None = None


def _spec(name: str, cls: str, aliases: tuple[str, ...] = (), note: str | None = None, **options: Any) -> SamplerSpec:
    return SamplerSpec(name, cls, MappingProxyType(options), aliases, note)


_SDE = {"algorithm_type": "sde-dpmsolver++"}
_HAS_TORCHSDE = importlib.util.find_spec("torchsde") is not None

SAMPLERS: tuple[SamplerSpec, ...] = (
    _spec("Euler a", "EulerAncestralDiscreteScheduler", ("k_euler_a", "euler_ancestral")),
    _spec("Euler", "EulerDiscreteScheduler", ("k_euler", "euler")),
    _spec("LMS", "LMSDiscreteScheduler", ("k_lms", "lms")),
    _spec("Heun", "HeunDiscreteScheduler", ("k_heun", "heun")),
    _spec("DPM2", "KDPM2DiscreteScheduler", ("k_dpm_2", "dpm_2")),
    _spec("DPM2 a", "KDPM2AncestralDiscreteScheduler", ("k_dpm_2_a", "dpm_2_ancestral")),
    _spec("DPM++ 2S a", "DPMSolverSinglestepScheduler", ("k_dpmpp_2s_a", "dpmpp_2s_ancestral")),
    _spec("DPM++ 2M", "DPMSolverMultistepScheduler", ("k_dpmpp_2m", "dpmpp_2m")),
    (
        _spec("DPM++ SDE", "DPMSolverSDEScheduler", ("k_dpmpp_sde", "dpmpp_sde"))
        if _HAS_TORCHSDE
        else _spec(
            "DPM++ SDE",
            "DPMSolverSinglestepScheduler",
            ("k_dpmpp_sde", "dpmpp_sde"),
            note="DPM++ SDE approximated by single-step SDE-DPM-Solver++ (torchsde not installed)",
            **_SDE,
        )
    ),
    _spec("DPM++ 2M SDE", "DPMSolverMultistepScheduler", ("k_dpmpp_2m_sde", "dpmpp_2m_sde"), **_SDE),
    _spec("DPM++ 2M SDE Heun", "DPMSolverMultistepScheduler", ("dpmpp_2m_sde_heun",), solver_type="heun", **_SDE),
    _spec("DPM++ 3M SDE", "DPMSolverMultistepScheduler", ("k_dpmpp_3m_sde", "dpmpp_3m_sde"), solver_order=3, **_SDE),
    _spec("DDIM", "DDIMScheduler", ("ddim",)),
    _spec("PLMS", "PNDMScheduler", ("plms", "pndm"), skip_prk_steps=True),
    _spec("UniPC", "UniPCMultistepScheduler", ("unipc",)),
    _spec("DEIS", "DEISMultistepScheduler", ("deis",)),
    _spec("LCM", "LCMScheduler", ("lcm",)),
    _spec("TCD", "TCDScheduler", ("tcd",)),
)

# A1111 names with no diffusers equivalent: refused with a clear message rather than silently substituted.
UNSUPPORTED = frozenset({"dpm fast", "dpm adaptive", "restart", "ddim cfg++", "k_dpm_fast", "k_dpm_ad"})


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    options: Mapping[str, Any]


SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec("Automatic", MappingProxyType({})),
    ScheduleSpec("Uniform", MappingProxyType({})),
    ScheduleSpec("Normal", MappingProxyType({})),
    ScheduleSpec("Simple", MappingProxyType({})),
    ScheduleSpec("Karras", MappingProxyType({"use_karras_sigmas": True})),
    ScheduleSpec("Exponential", MappingProxyType({"use_exponential_sigmas": True})),
    ScheduleSpec("Beta", MappingProxyType({"use_beta_sigmas": True})),
    ScheduleSpec("SGM Uniform", MappingProxyType({"timestep_spacing": "trailing"})),
    ScheduleSpec("DDIM", MappingProxyType({"timestep_spacing": "leading"})),
)

_SAMPLER_INDEX: dict[str, SamplerSpec] = {}
for _s in SAMPLERS:
    for _n in (_s.name, *_s.aliases):
        _SAMPLER_INDEX[_n.lower()] = _s
_SCHEDULE_INDEX = {s.name.lower(): s for s in SCHEDULES}
_LEGACY_SUFFIXES = ("Karras", "Exponential")


def sampler_names() -> list[str]:
    """Every accepted A1111 name, including the pre-1.9 "<sampler> Karras/Exponential" spellings."""
    names = [s.name for s in SAMPLERS]
    for spec in SAMPLERS:
        for suffix in _LEGACY_SUFFIXES:
            if _supports(spec, _SCHEDULE_INDEX[suffix.lower()]):
                names.append(f"{spec.name} {suffix}")
    return names


def schedule_names() -> list[str]:
    return [s.name for s in SCHEDULES]


class UnknownName(ValueError):
    """A sampler or schedule name we do not know; the message lists the supported ones."""

    def __init__(self, message: str, rule: str = "one_of", field: str = "sampler_name") -> None:
        super().__init__(message)
        self.rule = rule
        self.field = field


@dataclass(frozen=True)
class SamplerChoice:
    """A resolved request: the sampler spec plus the schedule (from the name's suffix or the scheduler field)."""

    sampler: SamplerSpec
    schedule: ScheduleSpec

    @property
    def label(self) -> str:
        return self.sampler.name

    @property
    def key(self) -> tuple[str, str]:
        return (self.sampler.name, self.schedule.name)


def choose(sampler_name: str | None, scheduler: str | None = None) -> SamplerChoice:
    """Resolve A1111 names. Raises :class:`UnknownName` naming the supported choices."""
    raw = (sampler_name or DEFAULT_SAMPLER).strip()
    spec = _SAMPLER_INDEX.get(raw.lower())
    schedule = _SCHEDULE_INDEX["automatic"]
    if spec is None:
        for suffix in _LEGACY_SUFFIXES:
            if raw.lower().endswith(" " + suffix.lower()):
                spec = _SAMPLER_INDEX.get(raw[: -len(suffix) - 1].strip().lower())
                schedule = _SCHEDULE_INDEX[suffix.lower()]
                break
    if spec is None:
        supported = ", ".join(sampler_names())
        if raw.lower() in UNSUPPORTED:
            raise UnknownName(f"sampler {raw!r} has no diffusers equivalent; supported: {supported}", "unsupported")
        raise UnknownName(f"unknown sampler {raw!r}; supported: {supported}")
    if scheduler is not None and scheduler.strip():
        explicit = _SCHEDULE_INDEX.get(scheduler.strip().lower())
        if explicit is None:
            raise UnknownName(
                f"unknown scheduler {scheduler!r}; supported: {', '.join(schedule_names())}", field="scheduler"
            )
        if explicit.name != "Automatic":
            schedule = explicit
    return SamplerChoice(spec, schedule)


def _supports(spec: SamplerSpec, schedule: ScheduleSpec) -> bool:
    import inspect

    import diffusers

    params = inspect.signature(getattr(diffusers, spec.scheduler_class).__init__).parameters
    return all(key in params for key in schedule.options)


@dataclass
class BuiltScheduler:
    scheduler: Any
    notes: list[str]


def build_scheduler(choice: SamplerChoice, base_config: Mapping[str, Any]) -> BuiltScheduler:
    """A fresh scheduler of the chosen class from the model's own scheduler config (betas, prediction type)."""
    import diffusers

    notes: list[str] = []
    if choice.sampler.note:
        notes.append(choice.sampler.note)
    options: dict[str, Any] = dict(choice.sampler.options)
    if _supports(choice.sampler, choice.schedule):
        options.update(choice.schedule.options)
    else:
        notes.append(f"schedule {choice.schedule.name!r} is not available for {choice.sampler.name!r}; used default")
    config = {k: v for k, v in base_config.items() if not k.startswith("_")}
    # Options the model config set for another scheduler family would leak across (e.g. karras on DDIM).
    for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"):
        config.pop(key, None)
    if config.get("algorithm_type") and "algorithm_type" not in options:
        config.pop("algorithm_type")
    cls = getattr(diffusers, choice.sampler.scheduler_class)
    return BuiltScheduler(cls.from_config(config, **options), notes)


def is_replaceable(base_config: Mapping[str, Any]) -> bool:
    """Only the discrete-time SD family swaps schedulers; flow-matching models keep their own.

    Decided from the model's original scheduler, not the one a previous request left on the pipeline.
    """
    import diffusers

    cls = getattr(diffusers, str(base_config.get("_class_name", "")), None)
    if cls is None:
        return False
    compatibles = {c.__name__ for c in cls._get_compatibles()} | {cls.__name__}
    return "EulerDiscreteScheduler" in compatibles
