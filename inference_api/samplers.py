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

from inference_api.schedules import (
    SIGMA_SCHEDULERS,
    TIMESTEP_SAMPLERS,
    ModelSigmas,
    automatic_for,
    sigmas_for,
    with_sigmas,
)

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
    """An A1111 schedule. ``options``: the nearest diffusers options, for schedulers that cannot take the
    exact sigma sequence of :mod:`inference_api.schedules`; ``exact``: whether those options give that sequence."""

    name: str
    options: Mapping[str, Any]
    exact: bool = False


def _schedule(name: str, exact: bool = False, **options: Any) -> ScheduleSpec:
    return ScheduleSpec(name, MappingProxyType({"timestep_spacing": "linspace", **options}), exact)


SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec("Automatic", MappingProxyType({})),
    _schedule("Uniform"),
    _schedule("Karras", True, use_karras_sigmas=True),
    _schedule("Exponential", True, use_exponential_sigmas=True),
    _schedule("Polyexponential", True, use_exponential_sigmas=True),  # A1111's default rho = 1: exponential
    _schedule("SGM Uniform", timestep_spacing="trailing"),
    _schedule("KL Optimal"),
    _schedule("Align Your Steps"),
    _schedule("Simple", timestep_spacing="trailing"),
    _schedule("Normal"),
    _schedule("DDIM", timestep_spacing="leading"),
    _schedule("Beta", use_beta_sigmas=True),
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
        explicit = _SCHEDULE_INDEX.get(scheduler.strip().lower().replace("_", " "))
        if explicit is None:
            raise UnknownName(
                f"unknown scheduler {scheduler!r}; supported: {', '.join(schedule_names())}", field="scheduler"
            )
        if explicit.name != "Automatic":
            schedule = explicit
    if schedule.name == "Automatic" and spec.name not in TIMESTEP_SAMPLERS:
        schedule = _SCHEDULE_INDEX[automatic_for(spec.name).lower()]  # the sampler's own default, as A1111 1.9+
    return SamplerChoice(spec, schedule)


def _supports(spec: SamplerSpec, schedule: ScheduleSpec) -> bool:
    """Whether the sampler samples ``schedule`` as A1111 does (exactly, or through equivalent options)."""
    if spec.name in TIMESTEP_SAMPLERS:
        return schedule.name == "Automatic"
    if spec.scheduler_class in SIGMA_SCHEDULERS:
        return True
    return schedule.exact and all(key in _init_parameters(spec.scheduler_class) for key in schedule.options)


def _init_parameters(class_name: str) -> set[str]:
    import inspect

    import diffusers

    return set(inspect.signature(getattr(diffusers, class_name).__init__).parameters)


@dataclass
class BuiltScheduler:
    scheduler: Any
    notes: list[str]


def build_scheduler(choice: SamplerChoice, base_config: Mapping[str, Any], xl: bool = False) -> BuiltScheduler:
    """A fresh scheduler of the chosen class from the model's own scheduler config (betas, prediction type),
    sampling A1111's sigma sequence for the chosen schedule."""
    import diffusers

    sampler, schedule = choice.sampler, choice.schedule
    notes: list[str] = [sampler.note] if sampler.note else []
    config = {k: v for k, v in base_config.items() if not k.startswith("_")}
    # Options the model config set for another scheduler family would leak across (e.g. karras on DDIM).
    for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "timestep_spacing"):
        config.pop(key, None)
    if config.get("algorithm_type") and "algorithm_type" not in sampler.options:
        config.pop("algorithm_type")
    options: dict[str, Any] = dict(sampler.options)
    cls = getattr(diffusers, sampler.scheduler_class)
    if sampler.name in TIMESTEP_SAMPLERS:
        # A1111's DDIM/PLMS/UniPC step through timesteps 1, 1 + 1000 // steps, ... whatever the schedule field.
        return BuiltScheduler(cls.from_config(config, **options, timestep_spacing="leading"), notes)
    if sampler.scheduler_class in SIGMA_SCHEDULERS:
        scheduler = cls.from_config(config, **options, timestep_spacing="linspace")

        def make(steps: int) -> Any:
            return sigmas_for(schedule.name, sampler.name, steps, base_config, xl)

        return BuiltScheduler(with_sigmas(scheduler, make, ModelSigmas.from_config(base_config)), notes)
    parameters = _init_parameters(sampler.scheduler_class)
    options.update({k: v for k, v in schedule.options.items() if k in parameters})
    if not _supports(sampler, schedule):
        notes.append(f"schedule {schedule.name!r} is approximated for {sampler.name!r} (diffusers' nearest spacing)")
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
