"""A1111's sigma schedules: golden values on SD 1.5's noise schedule, and what the built schedulers sample."""

from __future__ import annotations

import numpy as np
import pytest

from inference_api.architectures import SD_NOISE_SCHEDULE
from inference_api.samplers import build_scheduler, choose
from inference_api.schedules import AUTOMATIC, SCHEDULE_FUNCTIONS, ModelSigmas, automatic_for, sigmas_for

BASE = {"_class_name": "PNDMScheduler", **SD_NOISE_SCHEDULE}
SD15_SIGMA_MAX = 14.6146
SD15_SIGMA_MIN = 0.0292
# A1111 1.10, SD 1.5, Euler, 20 steps, Uniform: the head of the sequence it logs.
EULER_20_HEAD = [14.6146, 10.7468, 8.0815, 6.2050, 4.8557]


def test_model_sigmas_are_sd15s() -> None:
    model = ModelSigmas.from_config(SD_NOISE_SCHEDULE)
    assert model.sigma_max == pytest.approx(SD15_SIGMA_MAX, abs=1e-4)
    assert model.sigma_min == pytest.approx(SD15_SIGMA_MIN, abs=1e-4)
    t = np.array([0.0, 250.5, 999.0])
    assert np.allclose(model.sigma_to_t(model.t_to_sigma(t)), t, atol=1e-6)


def test_euler_20_steps_uniform_golden() -> None:
    sigmas = sigmas_for("Uniform", "Euler", 20, SD_NOISE_SCHEDULE, xl=False)
    assert len(sigmas) == 21 and sigmas[-1] == 0
    assert np.allclose(sigmas[:5], EULER_20_HEAD, atol=1e-4)
    assert sigmas[-2] == pytest.approx(SD15_SIGMA_MIN, abs=1e-4)


def test_karras_follows_the_formula_with_rho_7() -> None:
    n, rho = 20, 7.0
    sigmas = sigmas_for("Karras", "DPM++ 2M", n, SD_NOISE_SCHEDULE, xl=False)
    model = ModelSigmas.from_config(SD_NOISE_SCHEDULE)
    lo, hi = model.sigma_min ** (1 / rho), model.sigma_max ** (1 / rho)
    expected = [(hi + i / (n - 1) * (lo - hi)) ** rho for i in range(n)]
    assert np.allclose(sigmas[:-1], expected, rtol=1e-9) and sigmas[-1] == 0


@pytest.mark.parametrize("schedule", sorted(SCHEDULE_FUNCTIONS))
def test_every_schedule_decreases_from_sigma_max(schedule: str) -> None:
    sigmas = sigmas_for(schedule, "Euler", 10, SD_NOISE_SCHEDULE, xl=False)
    assert len(sigmas) == 11
    assert np.all(np.diff(sigmas) < 0)
    if schedule != "DDIM":  # DDIM's uniform timesteps start below the last training timestep
        assert sigmas[0] == pytest.approx(SD15_SIGMA_MAX, abs=2e-3)


def test_exponential_and_kl_optimal_and_ays() -> None:
    exp = sigmas_for("Exponential", "Euler", 10, SD_NOISE_SCHEDULE, xl=False)
    assert np.allclose(np.diff(np.log(exp[:-1])), np.log(SD15_SIGMA_MIN / SD15_SIGMA_MAX) / 9, atol=1e-3)
    kl = sigmas_for("KL Optimal", "Euler", 10, SD_NOISE_SCHEDULE, xl=False)
    assert kl[-1] == pytest.approx(SD15_SIGMA_MIN, abs=1e-4)  # KL Optimal ends at sigma_min, not 0
    # The published 11 values are used as they are for 11 steps, log-linearly resampled otherwise.
    assert list(sigmas_for("Align Your Steps", "Euler", 11, SD_NOISE_SCHEDULE, xl=False)[:3]) == [14.615, 6.475, 3.861]
    assert sigmas_for("Align Your Steps", "Euler", 11, SD_NOISE_SCHEDULE, xl=True)[1] == 6.315
    resampled = sigmas_for("Align Your Steps", "Euler", 20, SD_NOISE_SCHEDULE, xl=False)
    assert len(resampled) == 21 and resampled[0] == pytest.approx(14.615) and resampled[-2] == pytest.approx(0.029)


def test_next_to_last_sigma_is_discarded_for_dpm2() -> None:
    full = sigmas_for("Karras", "Euler", 21, SD_NOISE_SCHEDULE, xl=False)
    dpm2 = sigmas_for("Karras", "DPM2", 20, SD_NOISE_SCHEDULE, xl=False)
    assert len(dpm2) == 21 and np.allclose(dpm2, np.concatenate([full[:-2], full[-1:]]))


def test_automatic_is_the_samplers_own_default() -> None:
    assert automatic_for("DPM++ 2M") == "Karras" and automatic_for("DPM++ 2M SDE") == "Exponential"
    assert automatic_for("Euler") == "Uniform" and automatic_for("DPM++ 3M SDE") == "Exponential"
    for sampler, schedule in AUTOMATIC.items():
        assert choose(sampler, "Automatic").schedule.name == schedule
        assert choose(sampler).key == choose(sampler, schedule).key
    assert choose("DDIM").schedule.name == "Automatic"


@pytest.mark.parametrize(
    ("sampler", "schedule"),
    [
        ("Euler", "Uniform"),
        ("Euler a", "Karras"),
        ("DPM++ 2M", "Karras"),
        ("LMS", "SGM Uniform"),
        ("DPM++ 2M SDE", "Exponential"),
        ("DPM++ 3M SDE", "Exponential"),
        ("Euler", "Align Your Steps"),
    ],
)
def test_built_schedulers_sample_a1111s_sigmas(sampler: str, schedule: str) -> None:
    scheduler = build_scheduler(choose(sampler, schedule), BASE).scheduler
    scheduler.set_timesteps(20)
    expected = sigmas_for(schedule, sampler, 20, SD_NOISE_SCHEDULE, xl=False)
    assert np.allclose(scheduler.sigmas.numpy(), expected, rtol=1e-5)
    assert len(scheduler.timesteps) == len(expected) - 1


def test_euler_starts_from_noise_times_sigma_max() -> None:
    scheduler = build_scheduler(choose("Euler"), BASE).scheduler
    scheduler.set_timesteps(20)
    assert float(scheduler.init_noise_sigma) == pytest.approx(SD15_SIGMA_MAX, abs=1e-4)
    assert float(scheduler.timesteps[0]) == pytest.approx(999, abs=1e-3)


def test_timestep_samplers_use_a1111s_leading_timesteps() -> None:
    scheduler = build_scheduler(choose("DDIM"), BASE).scheduler
    scheduler.set_timesteps(20)
    assert scheduler.timesteps.tolist() == list(range(951, 0, -50))


def test_second_order_samplers_get_exact_karras_and_a_note_otherwise() -> None:
    built = build_scheduler(choose("Heun", "Karras"), BASE)
    assert built.scheduler.config["use_karras_sigmas"] is True and not built.notes
    built = build_scheduler(choose("Heun", "KL Optimal"), BASE)
    assert built.notes and "KL Optimal" in built.notes[0]
