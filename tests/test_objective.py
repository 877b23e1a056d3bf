"""The ltx-trainer objective: sigma sampler, noising, target, masked loss."""

import math

import pytest
import torch

from trainer_core.training import objective
from trainer_core.training.objective import SigmaSampler

PROBS = torch.tensor([0.10, 0.25, 0.50, 0.75, 0.90], dtype=torch.float64)


def _formula_quantiles(num_tokens: int, uniform_prob: float = 0.1, eps: float = 1e-3) -> torch.Tensor:
    """Quantiles of ltx-trainer's sampler written out from the reference notes' formula (§3.2), without the pack's
    code or random numbers. With z ~ N(mu, 1), s = sigmoid(z), t = (s - lo) / (hi - lo), F(y) = P(t <= y) =
    Phi(logit(lo + y (hi - lo)) - mu). Reflecting t < eps to 2 eps - t gives P(t' <= x) = F(x) - F(2 eps - x)
    for eps <= x < 1 (and 1 at x = 1, the clamp); a uniform_prob share is U(eps, 1)."""
    mu = 0.95 + (2.05 - 0.95) * (num_tokens - 1024) / (4096 - 1024)
    z_lo, z_hi = torch.special.ndtri(torch.tensor([0.005, 0.999], dtype=torch.float64)).tolist()
    lo, hi = 1 / (1 + math.exp(-(mu + z_lo))), 1 / (1 + math.exp(-(mu + z_hi)))

    def F(y):
        s = (lo + y * (hi - lo)).clamp(1e-300, 1 - 1e-16)
        return torch.where(lo + y * (hi - lo) <= 0, torch.zeros_like(y), torch.special.ndtr(torch.log(s / (1 - s)) - mu))

    xs = torch.linspace(eps, 1, 200_001, dtype=torch.float64)
    shifted = (F(xs) - F(2 * eps - xs)).clamp(0, 1)
    shifted[-1] = 1.0
    cdf = (1 - uniform_prob) * shifted + uniform_prob * (xs - eps) / (1 - eps)
    return xs[torch.searchsorted(cdf, PROBS)]


@pytest.mark.parametrize("tokens, published", [
    (510, [0.25, 0.44, 0.64, 0.79, 0.89]),
    (3570, [0.39, 0.62, 0.79, 0.89, 0.95]),
    (6120, [0.49, 0.72, 0.86, 0.93, 0.97]),
])
def test_sigma_quantiles_match_the_formula(tokens, published):
    expected = _formula_quantiles(tokens)
    drawn = SigmaSampler().sample(400_000, tokens, torch.Generator().manual_seed(1)).double()
    measured = torch.quantile(drawn[:200_000], PROBS) * 0.5 + torch.quantile(drawn[200_000:], PROBS) * 0.5
    assert torch.allclose(measured, expected, atol=4e-3), (measured, expected)
    # The reference notes' table (two decimals) is the same distribution.
    assert torch.allclose(expected, torch.tensor(published, dtype=torch.float64), atol=0.006)


def test_shift_is_linear_in_tokens_and_unclamped():
    assert SigmaSampler.mu(1024) == pytest.approx(0.95)
    assert SigmaSampler.mu(4096) == pytest.approx(2.05)
    assert SigmaSampler.mu(6120) == pytest.approx(0.95 + 1.1 * (6120 - 1024) / 3072)
    assert SigmaSampler.mu(51) < 0.95


def test_stretch_maps_the_tail_percentiles_to_the_unit_interval():
    s = SigmaSampler()
    z = torch.tensor([-2.5758293035489004, 3.090232306167813], dtype=torch.float64)
    assert s.transform(z, 3570).tolist() == pytest.approx([s.eps * 2, 1.0], abs=1e-9)


def test_values_below_eps_are_reflected_and_all_draws_lie_in_range():
    s = SigmaSampler()
    lo, hi = s.bounds(510)
    z = torch.tensor([math.log(lo / (1 - lo)) - s.mu(510) + 1e-6], dtype=torch.float64)
    t = s.transform(z, 510)
    assert s.eps < t.item() <= 2 * s.eps
    draws = s.sample(100_000, 510, torch.Generator().manual_seed(0))
    assert draws.min() >= s.eps * 0.999 and draws.max() <= 1.0


def test_uniform_share_is_ten_percent():
    s = SigmaSampler()
    gen = torch.Generator().manual_seed(3)
    n = 200_000
    draws = s.sample(n, 6120, gen)
    # With mu = 2.77 the shifted branch almost never goes below 0.2; the uniform branch puts ~0.1 * 0.2 there.
    share_low = (draws < 0.2).double().mean().item()
    shifted_low = (s.transform(torch.randn(n, generator=gen, dtype=torch.float64), 6120) < 0.2).double().mean().item()
    assert share_low == pytest.approx(0.9 * shifted_low + 0.1 * (0.2 - s.eps) / (1 - s.eps), abs=3e-3)


def test_noising_target_and_first_frame_conditioning():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 128, 3, 2, 2, generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    generated = objective.first_frame_mask(x0, torch.tensor([True, False]))
    assert generated.shape == (2, 12)
    assert not generated[0, :4].any() and generated[0, 4:].all() and generated[1].all()
    sigma = torch.tensor([0.3, 0.7])
    xt = objective.noisy_input(x0, noise, sigma[:, None] * generated)
    assert torch.equal(xt[0, :, 0], x0[0, :, 0])
    assert torch.allclose(xt[0, :, 1:], 0.7 * x0[0, :, 1:] + 0.3 * noise[0, :, 1:])
    assert torch.allclose(xt[1], 0.3 * x0[1] + 0.7 * noise[1])
    assert torch.equal(objective.velocity_target(x0, noise), noise - x0)


def test_masked_mse_scores_only_generated_tokens():
    target = torch.zeros(1, 128, 2, 1, 1)
    pred = torch.zeros_like(target)
    pred[:, :, 0] = 5.0
    pred[:, :, 1] = 1.0
    generated = objective.first_frame_mask(target, torch.tensor([True]))
    assert objective.masked_mse(pred, target, generated).item() == pytest.approx(1.0)
    assert objective.masked_mse(pred, target, torch.ones_like(generated)).item() == pytest.approx(13.0)


def test_audio_tokens_broadcast_over_channels_and_bins():
    a0 = torch.randn(1, 8, 5, 16)
    noise = torch.randn_like(a0)
    sig = torch.full((1, 5), 0.25)
    assert torch.allclose(objective.noisy_input(a0, noise, sig), 0.75 * a0 + 0.25 * noise)
