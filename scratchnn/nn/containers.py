"""Modules made of modules: ``Sequential`` chains them; ``Concat`` and ``Residual`` also send
their input around the module they hold (the skip connections of chapter 9)."""
import torch

from .checks import check_input
from .module import Module


def all_modules(module):
    """``module`` and every module inside it, at any depth (held directly or in a list)."""
    found = [module]
    for value in vars(module).values():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, Module):
                found += all_modules(item)
    return found


def check_no_module_twice(modules):
    """Refuse the same module object at two positions of a Sequential, even nested deeper.

    A module remembers its last ``forward`` for ``backward``; used twice, the second ``forward``
    overwrites what the first stored and the gradients come out wrong. Make two modules instead.
    """
    first_position = {}   # id of a module object -> the position where it was first met
    for index, module in enumerate(modules):
        for inner in all_modules(module):
            first = first_position.setdefault(id(inner), index)
            if first != index:
                raise ValueError(f"Sequential: the same {type(inner).__name__} object is used at "
                                 f"positions {first} and {index}; make a new one for each use")


class Sequential(Module):
    """Chain modules: forward left to right, backward right to left (the chain rule)."""

    def __init__(self, *modules):
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise ValueError(f"Sequential: expected Module arguments, "
                                 f"got {type(module).__name__} at position {index}")
        check_no_module_twice(modules)
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
        lines = [f"  ({index}): " + repr(module).replace("\n", "\n  ")
                 for index, module in enumerate(self.modules)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"


class Fork(Module):
    """A container of one ``module`` whose input also goes *around* it: Concat and Residual.

    The input is used twice, directly and through ``module``. By the chain rule its gradient is
    the *sum* of what comes back along both paths. Adding at forks is the one thing a general
    computation graph does beyond ``Sequential``; nesting forks inside ``Sequential`` inside
    forks builds a U-Net without one (chapter 9).
    """

    def __init__(self, module):
        if not isinstance(module, Module):
            raise ValueError(f"{type(self).__name__}: expected a Module, "
                             f"got {type(module).__name__}")
        self.module = module

    def named_param(self):
        return [(f"module.{name}", parameter, gradient)
                for name, parameter, gradient in self.module.named_param()]

    def __repr__(self):
        inner = repr(self.module).replace("\n", "\n  ")
        return f"{type(self).__name__}(\n  {inner}\n)"


class Concat(Fork):
    """A skip connection: ``cat([x, module(x)], dim=1)``, the input's channels first.

    The input's gradient is the first C channels of the output gradient, plus
    ``module.backward`` of the rest: the two paths add at the fork.
    """

    def __init__(self, module):
        super().__init__(module)
        self.channels = None

    def forward(self, x):
        check_input(self, x)
        inner = self.module.forward(x)
        if inner.dim() != 4 or inner.shape[0] != x.shape[0] or inner.shape[2:] != x.shape[2:]:
            raise ValueError(f"Concat: the inner module must keep N, H and W to be concatenated "
                             f"with its input {tuple(x.shape)}, got {tuple(inner.shape)}")
        self.channels = x.shape[1]
        return torch.cat([x, inner], dim=1)

    def backward(self, grad):
        if self.channels is None:
            raise RuntimeError("Concat.backward called before forward")
        direct, through = grad[:, :self.channels], grad[:, self.channels:]
        return direct + self.module.backward(through)          # the two paths add at the fork


class Residual(Fork):
    """``x + module(x)``: the module learns a correction to its input (He et al., 2016).

    The input's gradient is the sum of both paths, ``grad + module.backward(grad)``; the first
    term is why gradients reach early layers intact.
    """

    def __init__(self, module):
        super().__init__(module)
        self.shape = None

    def forward(self, x):
        check_input(self, x, ndim=None)
        inner = self.module.forward(x)
        if inner.shape != x.shape:
            raise ValueError(f"Residual: the inner module must keep the shape {tuple(x.shape)} "
                             f"to be added to its input, got {tuple(inner.shape)}")
        self.shape = x.shape
        return x + inner

    def backward(self, grad):
        if self.shape is None:
            raise RuntimeError("Residual.backward called before forward")
        return grad + self.module.backward(grad)
