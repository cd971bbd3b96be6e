"""Seeded LLM-like weight matrices and layer inputs, for format error measurements at any shape.

WHY: a format's error depends on the weight distribution: a Gaussian hides what heavy tails and outlier
channels do to a shared scale. These matrices copy three measured features of trained linear layers: a
Gaussian bulk, a few percent of heavy-tailed elements, and a few input channels with larger norms; the inputs
copy a decaying covariance spectrum and a few outlier feature channels. Every default below was chosen against
statistics measured on this repository's two real models (all-MiniLM-L6-v2: layers 0, 3, 5; SmolLM2-135M,
dequantized from its Q4_1 GGUF: layers 0, 3, 5, 20; activations captured on the reference text); the tests
recompute `weight_statistics` and hold the synthetic matrices to the measured ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WeightSpec:
    """How a synthetic [out_features, in_features] weight is drawn."""

    std: float = 0.05
    # Overall standard deviation. Measured: 0.039-0.096 (MiniLM), 0.047-0.40 (SmolLM2). Relative error metrics
    # do not depend on it; it keeps float16/float8 casts in the range real weights occupy.
    tail_fraction: float = 0.02
    # Share of elements drawn from the heavy-tailed Student-t instead of the Gaussian bulk. With the two below
    # (seeds 0-3 at 1536x576, 576x1536, 384x384): excess kurtosis 1.5-3.2, 0.12-0.17% of elements beyond
    # 4 std, max|w| 11-27 std. Measured on typical real layers: kurtosis 0.2-8, 0.02-0.5% beyond 4 std, max
    # 5-25 std; FFN output layers reach kurtosis 16-1582, which a default should not imitate.
    tail_dof: int = 6
    # Degrees of freedom of the Student-t: 6 keeps its kurtosis finite and the draw stable from seed to
    # seed; 3-5 gave kurtosis swinging between 4 and 50 across seeds.
    tail_scale: float = 1.75
    # The tail's scale relative to the bulk (unit variance) before the t's own spread.
    outlier_channels: int = 2
    # Input channels (columns) whose weights are all scaled up: the per-input-channel norm max/median is
    # 1.1-3.2 in typical real layers (up to 9.5 in MiniLM's FFN output). Per-channel and per-tensor scales
    # pay for them; groups along the input dimension mostly do not.
    outlier_scale: float = 2.5
    # Their scale: max/median column norm ~2.6, inside the measured typical range.


@dataclass(frozen=True)
class ActivationSpec:
    """How synthetic layer inputs [tokens, in_features] are drawn."""

    spectrum_power: float = 1.0
    # Eigenvalue i of the input covariance ~ 1/(1+i)^power, in a random orthonormal basis. With 1.0 the top 10
    # directions carry ~40% of the variance at 576 inputs; measured on SmolLM2 layer inputs: 30-69%.
    outlier_channels: int = 4
    # Hidden dimensions whose inputs are much larger than the rest (the "outlier features" of LLM.int8(),
    # Dettmers et al. 2022), which is what AWQ and SmoothQuant-style methods exploit.
    outlier_scale: float = 10.0
    # Their RMS over the median channel's: measured max/median channel RMS 5-30 on SmolLM2 layer inputs,
    # top four channels 3-16x.


DEFAULT_WEIGHT = WeightSpec()
DEFAULT_ACTIVATION = ActivationSpec()


def _generator(seed: int, stream: int) -> torch.Generator:
    """Independent streams per seed: weights and activations of one seed must not share random numbers."""
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)


def llm_like_weight(out_features: int, in_features: int, seed: int, spec: WeightSpec = DEFAULT_WEIGHT) -> torch.Tensor:
    """[out_features, in_features] float32: Gaussian bulk, Student-t tail elements, scaled outlier columns."""
    _check_shape(out_features, in_features)
    if not 0.0 <= spec.tail_fraction <= 1.0 or spec.tail_dof < 3 or not 0 <= spec.outlier_channels <= in_features:
        raise ValueError(f"invalid weight spec {spec}: tail_fraction in [0, 1], tail_dof >= 3 (finite "
                         f"kurtosis), outlier_channels in [0, in_features]")
    g = _generator(seed, 1)
    shape = (out_features, in_features)
    bulk = torch.randn(shape, generator=g, dtype=torch.float64)
    chi2 = torch.randn((spec.tail_dof, *shape), generator=g, dtype=torch.float64).square().sum(0)
    student_t = torch.randn(shape, generator=g, dtype=torch.float64) / (chi2 / spec.tail_dof).sqrt()
    in_tail = torch.rand(shape, generator=g, dtype=torch.float64) < spec.tail_fraction
    w = torch.where(in_tail, spec.tail_scale * student_t, bulk)
    columns = torch.randperm(in_features, generator=g)[: spec.outlier_channels]
    w[:, columns] *= spec.outlier_scale
    return (w * (spec.std / _mixture_std(spec, in_features))).float()


def _mixture_std(spec: WeightSpec, in_features: int) -> float:
    """Expected std of the unscaled draw, so the result's std is spec.std on average."""
    t_var = spec.tail_dof / (spec.tail_dof - 2)
    element_var = (1 - spec.tail_fraction) + spec.tail_fraction * spec.tail_scale**2 * t_var
    column_gain = 1 + spec.outlier_channels * (spec.outlier_scale**2 - 1) / in_features
    return math.sqrt(element_var * column_gain)


def correlated_activations(tokens: int, in_features: int, seed: int, draw: int = 0,
                           spec: ActivationSpec = DEFAULT_ACTIVATION) -> torch.Tensor:
    """[tokens, in_features] float32 layer inputs: covariance spectrum ~ 1/(1+i)^power in a random basis, then
    a few channels scaled by outlier_scale; the median channel has unit RMS in expectation.

    The distribution (basis, outlier channels) comes from `seed`; `draw` picks independent samples from it, so
    calibration rows (draw 1) and evaluation rows (draw 0) of one layer share their statistics, not their rows.
    """
    _check_shape(tokens, in_features)
    if not 0 <= spec.outlier_channels <= in_features or draw < 0:
        raise ValueError(f"outlier_channels must be in [0, {in_features}] and draw >= 0, got "
                         f"{spec.outlier_channels}, {draw}")
    g = _generator(seed, 2)
    basis, _ = torch.linalg.qr(torch.randn(in_features, in_features, generator=g, dtype=torch.float64))
    spectrum = torch.arange(1, in_features + 1, dtype=torch.float64).pow(-spec.spectrum_power / 2)  # std per axis
    channel_scale = torch.ones(in_features, dtype=torch.float64)
    channel_scale[torch.randperm(in_features, generator=g)[: spec.outlier_channels]] = spec.outlier_scale
    median_rms = (basis.square() @ spectrum.square()).sqrt().median()  # expected RMS per channel, before outliers
    z = torch.randn(tokens, in_features, generator=_generator(seed, 3 + draw), dtype=torch.float64)
    x = (z * spectrum) @ basis.T  # [tokens, in]
    return (x * (channel_scale / median_rms)).float()


def weight_statistics(w: torch.Tensor) -> dict[str, float]:
    """The figures the defaults were matched on: std, excess kurtosis, max|w|/std, share beyond 4 std, and
    max/median of the input-channel (column) norms."""
    w = w.detach().double()
    std = w.std()
    z = (w - w.mean()) / std
    columns = w.norm(dim=0)
    return {"std": float(std), "excess_kurtosis": float(z.pow(4).mean() - 3),
            "max_over_std": float(w.abs().max() / std), "beyond_4std": float((z.abs() > 4).double().mean()),
            "column_norm_max_over_median": float(columns.max() / columns.median())}


def _check_shape(rows: int, columns: int) -> None:
    if rows < 1 or columns < 1:
        raise ValueError(f"shape must be positive, got [{rows}, {columns}]")
