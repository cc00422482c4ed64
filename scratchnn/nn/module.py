"""The Module protocol, shared argument and input checks, and the Sequential container.

Every block of the framework has the same three methods, so a reader learns the pattern once:

* ``forward(*inputs)`` computes the output and remembers what ``backward`` will need;
* ``backward(*grad_outputs)`` receives dLoss/dOutput, adds dLoss/dParameter into the parameter
  gradients (they *accumulate* until ``zero_grad()``) and returns dLoss/dInput;
* ``param()`` lists ``(parameter, gradient)`` pairs: the live tensors, updated in place.
"""
import operator

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

    def children(self):
        """The modules this one holds, directly or in a list (``Sequential.modules``)."""
        found = []
        for value in vars(self).values():
            items = value if isinstance(value, (list, tuple)) else [value]
            found += [item for item in items if isinstance(item, Module)]
        return found

    def to(self, device=None, dtype=None):
        """Move (and/or cast) every tensor attribute, and every sub-module, like ``nn.Module.to``.

        The parameters become new tensors, so build the optimizer *after* calling ``to``. An
        optimizer built before would keep updating the old tensors, so each old tensor that is
        replaced gets a note, ``moved_by_to``, and an optimizer holding one refuses to step.
        """
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                moved = value.to(device=device, dtype=dtype)
                if moved is not value:
                    value.moved_by_to = True
                setattr(self, name, moved)
        for child in self.children():
            child.to(device, dtype)
        return self

    def state_dict(self):
        """Parameters by name (``"0.weight"``, ...): the keys of the same ``nn.Sequential``."""
        return {name: parameter for name, parameter, _ in self.named_param()}

    def load_state_dict(self, state_dict):
        """Copy tensors into the live parameters after checking every name and shape."""
        own = {name: parameter for name, parameter, _ in self.named_param()}
        missing = sorted(set(own) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
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
    if x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} input channels, "
                         f"got {x.shape[1]} (input shape {tuple(x.shape)})")


def check_grad(module, grad, shape, dtype):
    """The gradient given to ``backward`` must have the shape and dtype of the last output.

    ``shape`` is None until ``forward`` has run.
    """
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


def all_modules(module):
    """``module`` and every module inside it, at any depth."""
    found = [module]
    for child in module.children():
        found += all_modules(child)
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
