"""The checks every block shares: its input, the gradient given to ``backward``, its arguments.
Each raises a ValueError naming the module, what it expected and what it got, before any work.
"""
import operator

import torch


def check_input(module, x, ndim=4, channels=None):
    """Raise a ValueError that names the module when ``x`` is not the tensor it expects."""
    name = type(module).__name__
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D input (N, C, H, W), "
                         f"got {x.dim()}-D input of shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} input channels, "
                         f"got {x.shape[1]} (input shape {tuple(x.shape)})")


def check_grad(module, grad, shape, dtype):
    """The gradient given to ``backward`` must have the shape and dtype of the last output
    (``shape`` is None until ``forward`` has run)."""
    name = type(module).__name__
    if shape is None:
        raise RuntimeError(f"{name}.backward called before forward")
    if not isinstance(grad, torch.Tensor) or tuple(grad.shape) != tuple(shape):
        got = tuple(grad.shape) if isinstance(grad, torch.Tensor) else type(grad).__name__
        raise ValueError(f"{name}.backward: expected a gradient of shape {tuple(shape)}, "
                         f"got {got}")
    if grad.dtype != dtype:
        raise ValueError(f"{name}.backward: expected a gradient of dtype {dtype}, "
                         f"got {grad.dtype}")


def check_grad_like(module, grad, output):
    """``check_grad`` against a tensor that ``forward`` kept (None before the first forward)."""
    if output is None:
        raise RuntimeError(f"{type(module).__name__}.backward called before forward")
    check_grad(module, grad, output.shape, output.dtype)


def check_grad_saved(module, grad, saved):
    """``check_grad`` against the ``Saved`` record of the last forward (None before the first)."""
    if saved is None:
        raise RuntimeError(f"{type(module).__name__}.backward called before forward")
    check_grad(module, grad, saved.output_shape, saved.input.dtype)


def is_int(value, minimum):
    """True for an integer >= ``minimum``: an int, or numpy's (``operator.index`` takes both).

    A bool is refused, although Python counts True as 1: ``kernel_size=True`` is a mistake.
    """
    if isinstance(value, bool):
        return False
    try:
        return operator.index(value) >= minimum
    except TypeError:
        return False


def integer(value, what, module_name, minimum=1):
    """``value`` as a plain int, checked by ``is_int``; a pair such as (3, 3) is refused."""
    if not is_int(value, minimum):
        raise ValueError(f"{module_name}: expected {what} to be an int >= {minimum}, "
                         f"got {value!r}")
    return operator.index(value)


def pair(value, what, module_name, minimum=1):
    """Turn an int or a pair into a pair of plain ints, checking each is at least ``minimum``."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or not all(is_int(v, minimum) for v in values):
        raise ValueError(f"{module_name}: expected {what} to be an int >= {minimum} "
                         f"or a pair of them, got {value!r}")
    return tuple(operator.index(v) for v in values)


def check_bool(value, what, module_name):
    """Refuse anything but True and False (``bias=0`` or ``bias="yes"`` is a mistake)."""
    if not isinstance(value, bool):
        raise ValueError(f"{module_name}: expected {what} to be True or False, got {value!r}")
