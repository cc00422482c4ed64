"""Optimizers that update ``(parameter, gradient)`` pairs in place, with torch.optim's exact rules."""


class Optimizer:
    """Checks the pairs and the learning rate; ``zero_grad`` clears every gradient."""

    def __init__(self, params, lr):
        self.params = list(params)
        name = type(self).__name__
        for index, entry in enumerate(self.params):
            if len(entry) != 2 or entry[0].shape != entry[1].shape:
                raise ValueError(f"{name}: expected (parameter, gradient) pairs of equal shape, "
                                 f"got {entry!r:.80} at position {index}")
        if not lr >= 0:
            raise ValueError(f"{name}: expected a learning rate >= 0, got {lr}")
        self.lr = lr

    def zero_grad(self):
        for _, gradient in self.params:
            gradient.zero_()

    def check_non_negative(self, **values):
        for what, value in values.items():
            if not value >= 0:
                raise ValueError(f"{type(self).__name__}: expected {what} >= 0, got {value}")


class SGD(Optimizer):
    """p <- p - lr * v, with v = momentum * v + (g + weight_decay * p) (v = g + wd p at the first step)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr)
        self.check_non_negative(momentum=momentum, weight_decay=weight_decay)
        self.momentum, self.weight_decay = momentum, weight_decay
        self.velocities = [None] * len(self.params)

    def step(self):
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


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction, written as torch.optim.Adam computes it."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.check_non_negative(eps=eps, weight_decay=weight_decay)
        if len(betas) != 2 or not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"Adam: expected betas in [0, 1), got {betas}")
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.steps = 0
        self.means = [gradient.new_zeros(gradient.shape) for _, gradient in self.params]
        self.squares = [gradient.new_zeros(gradient.shape) for _, gradient in self.params]

    def step(self):
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
