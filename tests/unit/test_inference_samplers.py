"""The A1111 sampler/schedule table: every name resolves to a real diffusers scheduler, unknown names fail."""

from __future__ import annotations

import diffusers
import pytest

from inference_api.architectures import SD_NOISE_SCHEDULE
from inference_api.samplers import (
    SAMPLERS,
    UnknownName,
    build_scheduler,
    choose,
    is_replaceable,
    sampler_names,
    schedule_names,
)

BASE = {"_class_name": "PNDMScheduler", **SD_NOISE_SCHEDULE}


@pytest.mark.parametrize("name", sampler_names())
def test_every_name_builds_a_scheduler_that_sets_timesteps(name: str) -> None:
    built = build_scheduler(choose(name), BASE)
    built.scheduler.set_timesteps(5)
    assert len(built.scheduler.timesteps) >= 5
    spec = max((s for s in SAMPLERS if name == s.name or name.startswith(s.name + " ")), key=lambda s: len(s.name))
    assert isinstance(built.scheduler, getattr(diffusers, spec.scheduler_class))


def test_brief_names_are_present() -> None:
    wanted = {"Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE"}
    wanted |= {"DPM++ 2M SDE", "DDIM", "PLMS", "UniPC", "LMS Karras"}
    assert wanted <= set(sampler_names())


@pytest.mark.parametrize(
    ("name", "scheduler", "config_key", "value"),
    [
        ("Heun Karras", None, "use_karras_sigmas", True),
        ("DPM2", "Karras", "use_karras_sigmas", True),
        ("dpm2 a exponential", None, "use_exponential_sigmas", True),
        ("DPM++ 2M SDE", None, "algorithm_type", "sde-dpmsolver++"),
        ("DPM++ 3M SDE", None, "solver_order", 3),
        ("DDIM", None, "timestep_spacing", "leading"),
    ],
)
def test_schedules_and_variants_reach_the_config(
    name: str, scheduler: str | None, config_key: str, value: object
) -> None:
    built = build_scheduler(choose(name, scheduler), BASE)
    assert built.scheduler.config[config_key] == value


def test_the_model_configs_schedule_flags_do_not_leak() -> None:
    built = build_scheduler(choose("Heun", "Uniform"), {**BASE, "use_karras_sigmas": True})
    assert built.scheduler.config["use_karras_sigmas"] is False


def test_aliases_and_case() -> None:
    assert choose("k_euler_a").label == "Euler a"
    assert choose("EULER A").label == "Euler a"
    assert choose(None).label == "Euler"  # A1111's API default
    assert choose("Euler", "Automatic").schedule.name == "Uniform"  # Euler's own default
    assert choose("Euler", "sgm_uniform").schedule.name == "SGM Uniform"  # A1111's API ids work too


@pytest.mark.parametrize(
    ("name", "scheduler", "field", "rule"),
    [
        ("Magic", None, "sampler_name", "one_of"),
        ("DPM adaptive", None, "sampler_name", "unsupported"),
        ("Euler", "Wobbly", "scheduler", "one_of"),
    ],
)
def test_unknown_names_list_the_supported_ones(name: str, scheduler: str | None, field: str, rule: str) -> None:
    with pytest.raises(UnknownName) as excinfo:
        choose(name, scheduler)
    assert (excinfo.value.field, excinfo.value.rule) == (field, rule)
    supported = sampler_names() if field == "sampler_name" else schedule_names()
    assert all(n in str(excinfo.value) for n in supported[:5])


def test_only_the_sd_scheduler_family_is_replaced() -> None:
    assert is_replaceable({"_class_name": "EulerDiscreteScheduler"})
    assert is_replaceable({"_class_name": "PNDMScheduler"})
    assert not is_replaceable({"_class_name": "FlowMatchEulerDiscreteScheduler"})
    assert not is_replaceable({"_class_name": "NoSuchScheduler"})
