"""AUTOMATIC1111's noise schedules (sigma sequences) and the scheduler each sampler uses for "Automatic".

A1111 (1.9+) runs its k-diffusion samplers on a sigma sequence chosen by the ``scheduler`` field. The model's
discrete sigma table comes from its training betas; A1111 reads it with k-diffusion's ``DiscreteSchedule``
(linear interpolation in log sigma between the 1000 training timesteps). Every schedule here returns the
sequence A1111 samples with: ``steps`` values from high to low, then the final one (0, or sigma_min for KL
Optimal).

diffusers' schedulers that take one sigma per step (Euler, Euler a, LMS, DPM++ 2M/SDE/3M, UniPC, DEIS) get this
exact sequence (see :func:`with_sigmas`); second-order ones with interleaved sigmas (Heun, DPM2, DPM++ SDE,
DPM++ 2S a) get the nearest diffusers options (Karras and Exponential are exact there, the others are noted).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# The sampler's own schedule when the request says "Automatic" (A1111's samplers_k_diffusion options).
# Samplers not listed use "Uniform"; DDIM, PLMS and UniPC are timestep samplers in A1111 and ignore it.
AUTOMATIC: Mapping[str, str] = {
    "DPM++ 2M": "Karras",
    "DPM++ SDE": "Karras",
    "DPM++ 2S a": "Karras",
    "DPM++ 2M SDE": "Exponential",
    "DPM++ 2M SDE Heun": "Exponential",
    "DPM++ 3M SDE": "Exponential",
}
DEFAULT_SCHEDULE = "Uniform"
# Samplers whose schedule A1111 computes for steps + 1 and then drops the next-to-last sigma.
DISCARD_NEXT_TO_LAST = frozenset({"DPM2", "DPM2 a", "DPM++ 3M SDE"})
# A1111's timestep samplers: "leading" timesteps 1, 1 + 1000 // steps, ...; the schedule field does not apply.
TIMESTEP_SAMPLERS = frozenset({"DDIM", "PLMS", "UniPC", "LCM", "TCD"})

# Align Your Steps (NVIDIA): the published 10-step sigmas for SD 1.5 and SDXL, log-linearly resampled to the steps.
AYS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)
KARRAS_RHO = 7.0
BETA_ALPHA = BETA_BETA = 0.6


def automatic_for(sampler: str) -> str:
    return AUTOMATIC.get(sampler, DEFAULT_SCHEDULE)


@dataclass(frozen=True)
class ModelSigmas:
    """The model's sigma at each training timestep (ascending), read as k-diffusion's ``DiscreteSchedule``."""

    sigmas: np.ndarray

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelSigmas:
        n = int(config.get("num_train_timesteps", 1000))
        start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
        kind = config.get("beta_schedule", "scaled_linear")
        if config.get("trained_betas") is not None:
            betas = np.asarray(config["trained_betas"], dtype=np.float64)
        elif kind == "linear":
            betas = np.linspace(start, end, n, dtype=np.float64)
        elif kind == "squaredcos_cap_v2":
            f = [math.cos((t / n + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(n + 1)]
            betas = np.array([min(1 - f[i + 1] / f[i], 0.999) for i in range(n)])
        else:  # scaled_linear, SD's
            betas = np.linspace(start**0.5, end**0.5, n, dtype=np.float64) ** 2
        # A1111 builds the table in float32 (the model's alphas_cumprod), so its sigmas carry float32 rounding.
        alphas_cumprod = np.cumprod(1.0 - betas).astype(np.float32).astype(np.float64)
        return cls(((1 - alphas_cumprod) / alphas_cumprod) ** 0.5)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def t_to_sigma(self, t: np.ndarray) -> np.ndarray:
        log_sigmas = np.log(self.sigmas)
        low = np.clip(np.floor(t).astype(int), 0, len(self.sigmas) - 1)
        high = np.clip(low + 1, 0, len(self.sigmas) - 1)
        w = t - low
        return np.exp((1 - w) * log_sigmas[low] + w * log_sigmas[high])

    def sigma_to_t(self, sigma: np.ndarray) -> np.ndarray:
        log_sigmas = np.log(self.sigmas)
        log_sigma = np.log(np.maximum(np.asarray(sigma, dtype=np.float64), 1e-10))
        dists = log_sigma[..., None] - log_sigmas
        low = np.clip(np.cumsum(dists >= 0, axis=-1).argmax(axis=-1), 0, len(log_sigmas) - 2)
        high = low + 1
        w = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[high]), 0, 1)
        return (1 - w) * low + w * high


def _append_zero(x: np.ndarray) -> np.ndarray:
    return np.append(x, 0.0)


def uniform(n: int, m: ModelSigmas, xl: bool) -> np.ndarray:
    return _append_zero(m.t_to_sigma(np.linspace(len(m.sigmas) - 1, 0, n)))


def normal(n: int, m: ModelSigmas, xl: bool, sgm: bool = False) -> np.ndarray:
    start, end = m.sigma_to_t(np.array(m.sigma_max)), m.sigma_to_t(np.array(m.sigma_min))
    t = np.linspace(start, end, n + 1)[:-1] if sgm else np.linspace(start, end, n)
    return _append_zero(m.t_to_sigma(t))


def sgm_uniform(n: int, m: ModelSigmas, xl: bool) -> np.ndarray:
    return normal(n, m, xl, sgm=True)


def simple(n: int, m: ModelSigmas, xl: bool) -> np.ndarray:
    stride = len(m.sigmas) / n
    return _append_zero(np.array([m.sigmas[-(1 + int(x * stride))] for x in range(n)]))


def ddim_uniform(n: int, m: ModelSigmas, xl: bool) -> np.ndarray:
    stride = max(len(m.sigmas) // n, 1)
    return _append_zero(np.array(m.sigmas[1::stride][::-1]))


def karras(n: int, m: ModelSigmas, xl: bool) -> np.ndarray:
    ramp = np.linspace(0, 1, n)
    lo, hi = m.sigma_min ** (1 / KARRAS_RHO), m.sigma_max ** (1 / KARRAS_RHO)
    return _append_zero((hi + ramp * (lo - hi)) ** KARRAS_RHO)


def exponential(n: int, m: ModelSigmas, xl: bool) -> np.ndarray:
    return _append_zero(np.exp(np.linspace(math.log(m.sigma_max), math.log(m.sigma_min), n)))


def kl_optimal(n: int, m: ModelSigmas, xl: bool) -> np.ndarray:
    a_min, a_max = math.atan(m.sigma_min), math.atan(m.sigma_max)
    i = np.arange(n + 1) / n
    return np.tan(i * a_min + (1 - i) * a_max)


def align_your_steps(n: int, m: ModelSigmas, xl: bool) -> np.ndarray:
    published = np.array(AYS_SDXL if xl else AYS_SD15)
    if n == len(published):
        return _append_zero(published)
    xs, new_xs = np.linspace(0, 1, len(published)), np.linspace(0, 1, n)
    resampled = np.exp(np.interp(new_xs, xs, np.log(published[::-1])))[::-1]
    return _append_zero(resampled)


def beta(n: int, m: ModelSigmas, xl: bool) -> np.ndarray:
    from scipy import stats

    last = len(m.sigmas) - 1
    ts = np.rint(stats.beta.ppf(1 - np.linspace(0, 1, n, endpoint=False), BETA_ALPHA, BETA_BETA) * last)
    picked: list[float] = []
    previous = -1.0
    for t in ts:
        if t != previous:
            picked.append(float(m.sigmas[int(t)]))
        previous = t
    return _append_zero(np.array(picked))


SCHEDULE_FUNCTIONS: Mapping[str, Callable[[int, ModelSigmas, bool], np.ndarray]] = {
    "Uniform": uniform,
    "Normal": normal,
    "SGM Uniform": sgm_uniform,
    "Simple": simple,
    "DDIM": ddim_uniform,
    "Karras": karras,
    "Exponential": exponential,
    "KL Optimal": kl_optimal,
    "Align Your Steps": align_your_steps,
    "Beta": beta,
}


def sigmas_for(schedule: str, sampler: str, steps: int, config: Mapping[str, Any], xl: bool) -> np.ndarray:
    """The sigma sequence A1111 samples ``steps`` steps of ``sampler`` with (``schedule`` already resolved)."""
    model = ModelSigmas.from_config(config)
    discard = sampler in DISCARD_NEXT_TO_LAST
    sigmas = SCHEDULE_FUNCTIONS[schedule](steps + 1 if discard else steps, model, xl)
    if discard:
        sigmas = np.concatenate([sigmas[:-2], sigmas[-1:]])
    return sigmas


# diffusers schedulers that hold one sigma per step plus the final one, in ``sigmas``/``timesteps``.
SIGMA_SCHEDULERS = frozenset(
    {
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "LMSDiscreteScheduler",
        "DPMSolverMultistepScheduler",
        "DEISMultistepScheduler",
    }
)


def with_sigmas(scheduler: Any, make: Callable[[int], np.ndarray], model: ModelSigmas) -> Any:
    """``scheduler`` whose ``set_timesteps(n)`` samples the sigmas ``make(n)`` (and noise starts at ``sigma[0]``).

    A subclass of the scheduler's own class made on the fly: the pipeline calls ``set_timesteps`` itself,
    with the step count img2img or a refiner hand-over decided.
    """
    import torch

    base = type(scheduler)
    if base.__name__ not in SIGMA_SCHEDULERS:
        raise ValueError(f"{base.__name__} does not sample one sigma per step")

    def set_timesteps(self: Any, num_inference_steps: int, device: Any = None, **kwargs: Any) -> None:
        base.set_timesteps(self, num_inference_steps, device=device, **kwargs)
        sigmas = np.asarray(make(num_inference_steps), dtype=np.float64)
        if base.__name__ == "DEISMultistepScheduler" and sigmas[-1] == 0:
            # DEIS steps in log-SNR: a last sigma of 0 is an infinite step (NaN images). End where diffusers'
            # DEIS ends, at the model's smallest sigma.
            sigmas[-1] = float(model.sigmas[0])
        timesteps = model.sigma_to_t(sigmas[:-1])
        if self.timesteps.dtype == torch.int64:
            timesteps = timesteps.round()
        self.timesteps = torch.from_numpy(timesteps).to(device=device, dtype=self.timesteps.dtype)
        self.sigmas = torch.from_numpy(sigmas).to(dtype=torch.float32, device=self.sigmas.device)
        self.num_inference_steps = len(timesteps)

    attrs: dict[str, Any] = {"set_timesteps": set_timesteps}
    if base.__name__.startswith(("Euler", "LMS")):
        # k-diffusion starts from noise times sigma_max (diffusers uses sqrt(sigma_max^2 + 1) with "linspace" spacing).
        attrs["init_noise_sigma"] = property(lambda self: self.sigmas.max())
    cls = type(f"A1111{base.__name__}", (base,), attrs)
    scheduler.__class__ = cls
    return scheduler
