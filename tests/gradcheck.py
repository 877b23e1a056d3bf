"""Central finite differences against autograd, for the float64 gradient checks of the training forwards."""

from __future__ import annotations

import pytest
import torch


def assert_matches_finite_differences(scalar, probes, rel: float, abs: float, h: float = 1e-6) -> None:
    """``scalar()`` recomputes the loss; ``probes`` are ``(parameter, index)`` whose ``.grad`` autograd already
    filled. Each probed gradient must equal ``(f(p + h) - f(p - h)) / 2h``."""
    for param, idx in probes:
        with torch.no_grad():
            orig = param[idx].item()
            param[idx] = orig + h
            up = scalar().item()
            param[idx] = orig - h
            down = scalar().item()
            param[idx] = orig
        numeric = (up - down) / (2 * h)
        assert param.grad[idx].item() == pytest.approx(numeric, rel=rel, abs=abs), (tuple(param.shape), idx)
