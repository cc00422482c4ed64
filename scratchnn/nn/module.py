"""The Module protocol, shared input checks, and the Sequential container.

Every block of the framework has the same three methods, so a reader learns the pattern once:

* ``forward(*inputs)`` computes the output and remembers what ``backward`` will need;
* ``backward(*grad_outputs)`` receives dLoss/dOutput, adds dLoss/dParameter into the parameter
  gradients (they *accumulate* until ``zero_grad()``) and returns dLoss/dInput;
* ``param()`` lists ``(parameter, gradient)`` pairs: the live tensors, updated in place.
"""
import torch


class Module:
    """Base class of every block: parameters, device moves and (de)serialisation live here."""

    def forward(self, *inputs):
        raise NotImplementedError

    def backward(self, *grad_outputs):
        raise NotImplementedError

    def __call__(self, *inputs):
        return self.forward(*inputs)

    def named_param(self):
        """List of ``(name, parameter, gradient)``; blocks with parameters override this."""
        return []

    def param(self):
        return [(parameter, gradient) for _, parameter, gradient in self.named_param()]

    def zero_grad(self):
        for _, gradient in self.param():
            gradient.zero_()

    def to(self, device=None, dtype=None):
        """Move (and/or cast) every tensor attribute, and every sub-module, like ``nn.Module.to``.

        The parameters become new tensors, so build the optimizer *after* calling ``to``.
        """
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device=device, dtype=dtype))
            elif isinstance(value, Module):
                value.to(device, dtype)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    if isinstance(item, Module):
                        item.to(device, dtype)
        return self

    def state_dict(self):
        """Parameters by name (``"0.weight"``, ...), the same keys as the equivalent ``nn.Sequential``."""
        return {name: parameter for name, parameter, _ in self.named_param()}

    def load_state_dict(self, state_dict):
        """Copy tensors into the live parameters after checking that every name and shape matches."""
        own = {name: parameter for name, parameter, _ in self.named_param()}
        missing, unexpected = sorted(set(own) - set(state_dict)), sorted(set(state_dict) - set(own))
        if missing or unexpected:
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                             f"unexpected keys {unexpected}")
        for name, parameter in own.items():  # check every shape before copying anything
            if tuple(state_dict[name].shape) != tuple(parameter.shape):
                raise ValueError(f"{type(self).__name__}.load_state_dict: '{name}' expected shape "
                                 f"{tuple(parameter.shape)}, got {tuple(state_dict[name].shape)}")
        for name, parameter in own.items():
            parameter.copy_(state_dict[name])

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self):
        return ""


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
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} input channels, "
                         f"got {x.shape[1]} (input shape {tuple(x.shape)})")


def check_grad(module, grad, expected_shape, expected_dtype=None):
    """The gradient handed to ``backward`` must have the shape (and dtype) of the last ``forward`` output."""
    name = type(module).__name__
    if expected_shape is None:
        raise RuntimeError(f"{name}.backward called before forward")
    if not isinstance(grad, torch.Tensor) or tuple(grad.shape) != tuple(expected_shape):
        got = tuple(grad.shape) if isinstance(grad, torch.Tensor) else type(grad).__name__
        raise ValueError(f"{name}.backward: expected a gradient of shape {tuple(expected_shape)}, got {got}")
    if expected_dtype is not None and grad.dtype != expected_dtype:
        raise ValueError(f"{name}.backward: expected a gradient of dtype {expected_dtype}, got {grad.dtype}")


def pair(value, what, module_name, minimum=1):
    """Turn an int or a pair into a pair of ints, checking each is at least ``minimum``."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2 or not all(isinstance(v, int) and v >= minimum for v in values):
        raise ValueError(f"{module_name}: expected {what} to be an int >= {minimum} or a pair of them, "
                         f"got {value!r}")
    return values


class Sequential(Module):
    """Chain modules: forward left to right, backward right to left (the chain rule)."""

    def __init__(self, *modules):
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise ValueError(f"Sequential: expected Module arguments, got {type(module).__name__} "
                                 f"at position {index}")
        self.modules = list(modules)

    def forward(self, x):
        for module in self.modules:
            x = module.forward(x)
        return x

    def backward(self, grad):
        for module in reversed(self.modules):
            grad = module.backward(grad)
        return grad

    def named_param(self):
        return [(f"{index}.{name}", parameter, gradient)
                for index, module in enumerate(self.modules)
                for name, parameter, gradient in module.named_param()]

    def __getitem__(self, index):
        return self.modules[index]

    def __len__(self):
        return len(self.modules)

    def __repr__(self):
        lines = [f"  ({index}): {module!r}" for index, module in enumerate(self.modules)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"
