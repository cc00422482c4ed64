"""The Module protocol, and ``Saved``: the record a forward pass keeps for its backward pass.

Every block of the framework has the same three methods, so a reader learns the pattern once:

* ``forward(*inputs)`` computes the output and remembers what ``backward`` will need;
* ``backward(*grad_outputs)`` receives dLoss/dOutput, adds dLoss/dParameter into the parameter
  gradients (they *accumulate* until ``zero_grad()``) and returns dLoss/dInput;
* ``param()`` lists ``(parameter, gradient)`` pairs: the live tensors, updated in place.
"""
from dataclasses import dataclass

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
        """Move (and/or cast) every parameter and its gradient, in place, like ``nn.Module.to``.

        Each tensor object stays the same and takes the moved values (``tensor.data = ...``, as
        torch.nn does with ``param.data``), so the pairs that ``param()`` handed out, to an
        optimizer for instance, stay live. What a module kept from its last forward pass is not
        moved: the next forward pass computes it anew.
        """
        for parameter, gradient in self.param():
            parameter.data = parameter.data.to(device=device, dtype=dtype)
            gradient.data = gradient.data.to(device=device, dtype=dtype)
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


@dataclass(frozen=True)
class Saved:
    """What a forward pass keeps for its backward pass, in one record (MiniTorch's
    ``ctx.save_for_backward``). Backward reads only it and the parameters, never a setting that
    may have changed since: it runs the backward pass of the ``form`` that forward ran.
    """
    form: str             # how forward computed: "unfold", or a faster form of chapter 8
    input: torch.Tensor   # (N, C, H, W): its shape and dtype, and the input itself
    output_shape: tuple   # the shape that the output gradient must have
    kept: object = None   # what the form also needs: unfold's columns, argmax, a fast record
