"""Optimizers that update ``(parameter, gradient)`` pairs in place, with torch.optim's rules.

Like torch.optim, an optimizer owns its state (SGD's momentum buffers, Adam's running averages)
and saves and restores it with ``state_dict()`` / ``load_state_dict()``; nothing outside reaches
into its buffers. A state holds only tensors, lists, numbers, strings and None, so
``torch.load(path, weights_only=True)`` can read it back.
"""
import math
import numbers

import torch


def is_number(value):
    """A real number (an int or a float, numpy's too), but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def non_negative(value, what, where):
    """``value`` as a float, after checking that it is a finite number >= 0."""
    if not (is_number(value) and 0 <= value < math.inf):
        raise ValueError(f"{where}: expected {what} to be a finite number >= 0, got {value!r}")
    return float(value)


def checked_betas(betas, where):
    """Adam's two decay rates as a tuple of floats, each in [0, 1)."""
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2
            and all(is_number(beta) and 0 <= beta < 1 for beta in betas)):
        raise ValueError(f"{where}: expected betas to be two numbers in [0, 1), got {betas!r}")
    return float(betas[0]), float(betas[1])


def is_pair(entry):
    """A (parameter, gradient) pair: floating-point tensors of one shape, dtype and device."""
    if not isinstance(entry, (tuple, list)) or len(entry) != 2:
        return False
    parameter, gradient = entry
    return (isinstance(parameter, torch.Tensor) and isinstance(gradient, torch.Tensor)
            and parameter.is_floating_point() and parameter.shape == gradient.shape
            and parameter.dtype == gradient.dtype and parameter.device == gradient.device)


class Optimizer:
    """Checks the pairs and the learning rate; ``zero_grad`` clears every gradient."""

    def __init__(self, params, lr):
        name = type(self).__name__
        try:
            self.params = list(params)
        except TypeError:
            raise ValueError(f"{name}: expected the (parameter, gradient) pairs of "
                             f"module.param(), got {type(params).__name__}") from None
        if not self.params:
            raise ValueError(f"{name}: expected at least one (parameter, gradient) pair, got none")
        for index, entry in enumerate(self.params):
            if not is_pair(entry):
                raise ValueError(f"{name}: expected (parameter, gradient) pairs of equal shape, "
                                 f"dtype and device (floating-point tensors), "
                                 f"got {entry!r:.80} at position {index}")
        self.lr = non_negative(lr, "lr", name)

    def zero_grad(self):
        for _, gradient in self.params:
            gradient.zero_()

    def like_parameters(self, buffers):
        """Put each buffer (None: not made yet) on its parameter's device and dtype, in place:
        ``Module.to`` may have moved the parameters since this optimizer made its buffers."""
        for buffer, (parameter, _) in zip(buffers, self.params):
            if buffer is not None:
                buffer.data = buffer.data.to(parameter.device, parameter.dtype)

    def check_kind(self, state):
        """A state must be a dict saved by the same kind of optimizer."""
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, dict):
            raise ValueError(f"{where}: expected a dict, got {type(state).__name__}")
        if state.get("kind") != type(self).__name__:
            raise ValueError(f"{where}: expected a state of kind {type(self).__name__!r}, "
                             f"got kind {state.get('kind')!r:.80}")

    def loaded_buffers(self, state, key, none_allowed=False):
        """``state[key]``, one tensor per parameter, checked and copied like its parameter.

        Each copy is put on its parameter's device and dtype. ``none_allowed``: SGD's momentum
        buffers are None until the first step.
        """
        where = f"{type(self).__name__}.load_state_dict"
        saved = state.get(key)
        if not isinstance(saved, (list, tuple)) or len(saved) != len(self.params):
            got = f"{len(saved)} of them" if isinstance(saved, (list, tuple)) else f"{saved!r:.80}"
            raise ValueError(f"{where}: expected '{key}' to be a list of {len(self.params)} "
                             f"tensors, one per parameter, got {got}")
        copies = []
        for index, (buffer, (parameter, _)) in enumerate(zip(saved, self.params)):
            if buffer is None and none_allowed:
                copies.append(None)
            elif isinstance(buffer, torch.Tensor) and buffer.shape == parameter.shape:
                copies.append(buffer.to(parameter.device, parameter.dtype, copy=True))
            else:
                got = (tuple(buffer.shape) if isinstance(buffer, torch.Tensor)
                       else f"{buffer!r:.80}")
                raise ValueError(f"{where}: expected '{key}'[{index}] of shape "
                                 f"{tuple(parameter.shape)}, got {got}")
        return copies


class SGD(Optimizer):
    """p <- p - lr * v, with v = momentum * v + (g + weight_decay * p).

    At the first step v = g + weight_decay * p, as in torch.optim.SGD.
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum = non_negative(momentum, "momentum", "SGD")
        self.weight_decay = non_negative(weight_decay, "weight_decay", "SGD")
        self.velocities = [None] * len(self.params)

    def step(self):
        self.like_parameters(self.velocities)
        for index, (parameter, gradient) in enumerate(self.params):
            if self.weight_decay:
                gradient = gradient.add(parameter, alpha=self.weight_decay)
            if self.momentum:
                if self.velocities[index] is None:
                    self.velocities[index] = gradient.clone()
                else:
                    self.velocities[index].mul_(self.momentum).add_(gradient)
                gradient = self.velocities[index]
            parameter.add_(gradient, alpha=-self.lr)

    def state_dict(self):
        """The hyper-parameters and copies of the momentum buffers (None before a step)."""
        return {"kind": "SGD", "lr": self.lr, "momentum": self.momentum,
                "weight_decay": self.weight_decay,
                "velocities": [None if v is None else v.clone() for v in self.velocities]}

    def load_state_dict(self, state):
        """Restore a ``state_dict()``; on any mismatch, raise before changing anything.

        A hyper-parameter missing from the state (older states saved only ``lr``) keeps its
        current value.
        """
        self.check_kind(state)
        where = "SGD.load_state_dict"
        lr = non_negative(state.get("lr", self.lr), "lr", where)
        momentum = non_negative(state.get("momentum", self.momentum), "momentum", where)
        weight_decay = non_negative(state.get("weight_decay", self.weight_decay),
                                    "weight_decay", where)
        velocities = self.loaded_buffers(state, "velocities", none_allowed=True)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocities = velocities


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction, written as torch.optim.Adam computes it."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.betas = checked_betas(betas, "Adam")
        self.eps = non_negative(eps, "eps", "Adam")
        self.weight_decay = non_negative(weight_decay, "weight_decay", "Adam")
        self.steps = 0
        self.means = [gradient.new_zeros(gradient.shape) for _, gradient in self.params]
        self.squares = [gradient.new_zeros(gradient.shape) for _, gradient in self.params]

    def step(self):
        self.like_parameters(self.means)
        self.like_parameters(self.squares)
        self.steps += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1 ** self.steps)
        correction2_sqrt = (1 - beta2 ** self.steps) ** 0.5
        for (parameter, gradient), mean, square in zip(self.params, self.means, self.squares):
            if self.weight_decay:
                gradient = gradient.add(parameter, alpha=self.weight_decay)
            mean.lerp_(gradient, 1 - beta1)                                   # running mean of g
            square.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)  # running mean of g^2
            denominator = (square.sqrt() / correction2_sqrt).add_(self.eps)
            parameter.addcdiv_(mean, denominator, value=-step_size)

    def state_dict(self):
        """The hyper-parameters, the step count and copies of the running averages."""
        return {"kind": "Adam", "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "steps": self.steps,
                "means": [mean.clone() for mean in self.means],
                "squares": [square.clone() for square in self.squares]}

    def load_state_dict(self, state):
        """Restore a ``state_dict()``; on any mismatch, raise before changing anything.

        A hyper-parameter missing from the state (older states saved only ``lr``) keeps its
        current value.
        """
        self.check_kind(state)
        where = "Adam.load_state_dict"
        lr = non_negative(state.get("lr", self.lr), "lr", where)
        betas = checked_betas(state.get("betas", self.betas), where)
        eps = non_negative(state.get("eps", self.eps), "eps", where)
        weight_decay = non_negative(state.get("weight_decay", self.weight_decay),
                                    "weight_decay", where)
        steps = state.get("steps")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"{where}: expected 'steps' to be an int >= 0, got {steps!r:.80}")
        means = self.loaded_buffers(state, "means")
        squares = self.loaded_buffers(state, "squares")
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.steps, self.means, self.squares = steps, means, squares
