"""The optimizers the package trains with: their registry, the factory, and the learning rate.

Adding an optimizer means adding one line to ``OPTIMIZERS``: its default learning rate, the
from-scratch class (``scratchnn.nn``) and ``torch.optim``'s class for the reference twin.
``make_optimizer`` builds the one that suits a network's framework; ``scheduled_learning_rate``
is the learning-rate schedule a run follows step by step.
"""
import math
from dataclasses import dataclass

import torch

from . import nn

LR_SCHEDULES = ("constant", "cosine", "rampdown")   # see scheduled_learning_rate


@dataclass(frozen=True)
class OptimizerKind:
    """An optimizer the package can train with, in both frameworks.

    ``default_lr`` suits an MSE averaged over N*C*H*W elements, whose gradients are tiny, so
    plain SGD needs a large step (chapter 6).
    """
    default_lr: float
    scratch: type        # the from-scratch class (scratchnn.nn)
    torch: type          # torch.optim's class, for the reference twin
    has_momentum: bool


OPTIMIZERS = {
    "sgd": OptimizerKind(0.1, nn.SGD, torch.optim.SGD, has_momentum=True),
    "adam": OptimizerKind(1e-3, nn.Adam, torch.optim.Adam, has_momentum=False),
}


def optimizer_kind(name):
    """Look up an optimizer by name, with an error that lists the names that exist."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def check_momentum(name, momentum):
    """Momentum is an SGD setting: Adam keeps running averages of its own."""
    if momentum and not optimizer_kind(name).has_momentum:
        raise ValueError(f"momentum is an SGD setting; {name} has its own running averages")


def is_torch_network(network):
    """True for a ``torch.nn`` network (the reference twin), False for a from-scratch one."""
    return isinstance(network, torch.nn.Module)


def make_optimizer(network, name="adam", lr=None, momentum=0.0):
    """The optimizer ``name`` (a key of ``settings.OPTIMIZERS``) for ``network``, taken from the
    network's own framework: ``scratchnn.nn`` for a from-scratch network, ``torch.optim`` for
    its twin. ``lr=None`` takes the optimizer's default learning rate."""
    kind = optimizer_kind(name)
    check_momentum(name, momentum)
    lr = kind.default_lr if lr is None else lr
    options = {"momentum": momentum} if kind.has_momentum else {}
    if is_torch_network(network):
        return kind.torch(network.parameters(), lr=lr, **options)
    return kind.scratch(network.param(), lr=lr, **options)


def learning_rate(optimizer):
    """The learning rate of a from-scratch or a ``torch.optim`` optimizer."""
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer.param_groups[0]["lr"]
    return optimizer.lr


def set_learning_rate(optimizer, lr):
    """Change the learning rate of a from-scratch or a ``torch.optim`` optimizer."""
    if isinstance(optimizer, torch.optim.Optimizer):
        for group in optimizer.param_groups:
            group["lr"] = lr
    else:
        optimizer.lr = lr


def scheduled_learning_rate(schedule, base_lr, step, total_steps):
    """The learning rate of step ``step`` (0-based) of a run of ``total_steps``.

    * ``constant``: ``base_lr`` throughout;
    * ``cosine``: from ``base_lr`` down to 0 along half a cosine;
    * ``rampdown``: the Noise2Noise code's: constant, then over the last 30% of the steps down
      to 0 along a squared half-cosine, ``base_lr * ((1 + cos(pi t)) / 2) ** 2`` with t from 0
      to 1.

    A pure function of the step, so a resumed run continues the schedule exactly.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; expected one of "
                         f"{LR_SCHEDULES}")
    progress = min(step / max(total_steps, 1), 1.0)
    if schedule == "cosine":
        return base_lr * (1 + math.cos(math.pi * progress)) / 2
    if schedule == "rampdown" and progress > 1 - RAMPDOWN_FRACTION:
        t = (progress - (1 - RAMPDOWN_FRACTION)) / RAMPDOWN_FRACTION
        return base_lr * ((1 + math.cos(math.pi * t)) / 2) ** 2
    return base_lr


RAMPDOWN_FRACTION = 0.3  # the Noise2Noise code's ramp-down covers the last 30% of training
