"""Shared test helpers."""

import lossbench
from lossbench.heads import CLASS_TASKS


def build_head(name: str, in_features: int = 8, num_classes: int = 5, **kwargs):
    """Build a registered head with the arguments its task needs."""
    if lossbench.get_head_class(name).task in CLASS_TASKS:
        kwargs["num_classes"] = num_classes
    return lossbench.get_head(name, in_features=in_features, **kwargs)


def assert_value_and_grad(ours, ref, x, *, seed: int, atol: float = 1e-6, rtol: float = 1e-6):
    """``ours(x)`` equals ``ref(x)``, and so do their gradients w.r.t. ``x`` under a random upstream gradient."""
    import torch

    grads, values = [], []
    for fn in (ours, ref):
        leaf = x.detach().clone().requires_grad_(True)
        out = fn(leaf)
        up = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
        (grad,) = torch.autograd.grad((out * up).sum(), leaf)
        values.append(out.detach())
        grads.append(grad)
    torch.testing.assert_close(values[0], values[1], atol=atol, rtol=rtol)
    torch.testing.assert_close(grads[0], grads[1], atol=atol, rtol=rtol)
