"""The adapter between the training loop and a network: one training step in either framework.

A from-scratch network (``scratchnn.nn``) computes its gradients by hand, its ``torch.nn`` twin
with autograd; everything else a run does with them is the same. ``Stepper`` holds what is the
same (the loss, the optimizer, saving and loading, data-parallel gradients); each subclass says
only how one step computes the gradients.
"""
import torch

from . import nn
from .optimizers import is_torch_network, make_optimizer


class Stepper:
    """A network, its optimizer and the MSE loss, stepping on mini-batches.

    ``reduce_gradients(gradients, count)``, when given, is called between the backward pass and
    the update: data-parallel training (chapter 10) combines there the gradients of every
    process's shard of the batch (``scratchnn.distributed.all_reduce_gradients``).
    """

    def __init__(self, network, optimizer, reduce_gradients=None):
        self.network, self.optimizer = network, optimizer
        self.reduce_gradients = reduce_gradients

    def step(self, inputs, targets):
        """One gradient step on a mini-batch; returns the batch's loss (a 0-d tensor).

        In data-parallel training the mini-batch is this process's shard of the global batch,
        and it may hold no sample at all: its gradients are then zero.
        """
        self.optimizer.zero_grad()
        loss = inputs.new_zeros(())
        if len(inputs):
            loss = self.loss_and_gradients(inputs, targets)
        if self.reduce_gradients is not None:
            self.reduce_gradients(self.gradients(), len(inputs))
        self.optimizer.step()
        return loss

    def weights(self):
        """A copy of the network's parameters by name: what ``network.pth`` holds."""
        return {name: tensor.clone() for name, tensor in self.network.state_dict().items()}

    def state_dict(self):
        return {"network": self.weights(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])


class ScratchStepper(Stepper):
    """A from-scratch network: forward, backward by hand, update."""

    def __init__(self, network, optimizer, reduce_gradients=None):
        live = [parameter for parameter, _ in network.param()]
        if any(mine is not theirs for (mine, _), theirs in zip(optimizer.params, live)):
            raise ValueError("the optimizer does not hold this network's parameters (was it "
                             "made for another network?)")
        super().__init__(network, optimizer, reduce_gradients)
        self.loss = nn.MSE()

    def loss_and_gradients(self, inputs, targets):
        loss = self.loss.forward(self.network.forward(inputs), targets)
        self.network.backward(self.loss.backward())
        return loss

    def forward(self, inputs):
        return self.network.forward(inputs)

    def parameters(self):
        return [parameter for parameter, _ in self.network.param()]

    def gradients(self):
        """The live gradient tensors, in the order of ``parameters()``."""
        return [gradient for _, gradient in self.network.param()]


class TorchStepper(Stepper):
    """The ``torch.nn`` twin, its ``torch.optim`` optimizer and ``MSELoss``: autograd does the
    backward pass."""

    def __init__(self, network, optimizer, reduce_gradients=None):
        super().__init__(network, optimizer, reduce_gradients)
        self.loss = torch.nn.MSELoss()

    def loss_and_gradients(self, inputs, targets):
        loss = self.loss(self.network(inputs), targets)
        loss.backward()
        return loss.detach()

    def forward(self, inputs):
        with torch.no_grad():
            return self.network(inputs)

    def parameters(self):
        return [parameter.detach() for parameter in self.network.parameters()]

    def gradients(self):
        """Every parameter's ``.grad``, in the order of ``parameters()``; zeros where no
        backward pass made one (``zero_grad`` leaves ``None``)."""
        for parameter in self.network.parameters():
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
        return [parameter.grad for parameter in self.network.parameters()]


def make_stepper(network, optimizer="adam", lr=None, momentum=0.0, reduce_gradients=None):
    """The adapter for ``network``; ``optimizer`` is a name (``"sgd"``, ``"adam"``) or an
    optimizer already made for the network."""
    if isinstance(optimizer, str):
        optimizer = make_optimizer(network, optimizer, lr, momentum)
    stepper = TorchStepper if is_torch_network(network) else ScratchStepper
    return stepper(network, optimizer, reduce_gradients)
