"""Gradient checking: finite differences and PyTorch autograd as two independent referees.

The framework computes every derivative by hand. These helpers let a reader (and the tests) check
those derivatives two ways:

* ``numerical_gradient`` nudges each input element by +-eps and measures how a scalar loss moves
  (central differences, error O(eps^2)); slow, but it needs no calculus at all;
* ``compare`` prints the largest absolute difference between two tensors and whether it is within
  a tolerance, so a notebook cell shows "max error 3.1e-15 ... pass".

Everything here runs in float64: in float32, rounding (about 1e-7 relative) would swamp the
differences we want to see.
"""
import torch


def numerical_gradient(loss_of, x, eps=1e-6):
    """d loss_of(x) / dx by central differences, element by element (x is modified and
    restored)."""
    if x.dtype != torch.float64:
        raise ValueError(f"numerical_gradient: expected a float64 tensor, got {x.dtype}")
    grad = torch.zeros_like(x)
    flat_x, flat_grad = x.view(-1), grad.view(-1)
    for index in range(flat_x.numel()):
        original = flat_x[index].item()
        flat_x[index] = original + eps
        loss_plus = float(loss_of(x))
        flat_x[index] = original - eps
        loss_minus = float(loss_of(x))
        flat_x[index] = original
        flat_grad[index] = (loss_plus - loss_minus) / (2 * eps)
    return grad


def max_error(ours, reference):
    """Largest absolute element-wise difference between two tensors of the same shape."""
    if tuple(ours.shape) != tuple(reference.shape):
        raise ValueError("max_error: shapes differ: "
                         f"{tuple(ours.shape)} vs {tuple(reference.shape)}")
    if ours.numel() == 0:
        return 0.0
    return float((ours.detach().to(torch.float64)
                  - reference.detach().to(torch.float64)).abs().max())


def compare(name, ours, reference, tol=1e-9, verbose=True):
    """Print and return whether ``ours`` matches ``reference`` to within ``tol`` (max abs
    error)."""
    error = max_error(ours, reference)
    passed = error <= tol
    if verbose:
        print(f"{name:<28} max error {error:.1e}  (tolerance {tol:.0e})  "
              f"{'pass' if passed else 'FAIL'}")
    return passed


def check_module_numerically(module, x, eps=1e-6, seed=0):
    """Check a module's input and parameter gradients against central differences.

    The scalar loss is ``sum(forward(x) * probe)`` with a fixed random ``probe``, so its gradient
    with respect to the output is exactly ``probe``. Returns ``{name: max error}``.
    """
    generator = torch.Generator().manual_seed(seed)
    probe = torch.randn(module.forward(x).shape, generator=generator, dtype=torch.float64)

    def loss(_):
        return (module.forward(x) * probe).sum()

    module.zero_grad()
    module.forward(x)
    grad_input = module.backward(probe)
    errors = {"input": max_error(grad_input, numerical_gradient(loss, x, eps))}
    for name, parameter, gradient in module.named_param():
        errors[name] = max_error(gradient, numerical_gradient(loss, parameter, eps))
    return errors
