"""SGD and Adam against torch.optim, step for step, and the gradient/parameter bookkeeping."""
import pytest
import torch
from torch import nn

from scratchnn import MSE, SGD, Adam, Conv2d, NearestUpsampling, ReLU, Sequential, Sigmoid

STEPS = 5
TOL = 1e-9


pytestmark = pytest.mark.usefixtures("one_thread", "no_autograd")


def twin_networks(seed=0):
    """A scratchnn network and its torch.nn twin with the same float64 weights."""
    torch.manual_seed(seed)
    ours = Sequential(Conv2d(3, 4, 3, stride=2, padding=1), ReLU(), NearestUpsampling(2),
                      Conv2d(4, 3, 3, padding=1), Sigmoid()).to(dtype=torch.float64)
    theirs = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Upsample(scale_factor=2),
                           nn.Conv2d(4, 3, 3, padding=1), nn.Sigmoid()).double()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def assert_same_parameters(ours, theirs, when):
    reference = theirs.state_dict()
    for name, parameter in ours.state_dict().items():
        error = (parameter - reference[name]).abs().max().item()
        assert error <= TOL, f"{when}: {name} differs by {error:.2e}"


OPTIMIZERS = [
    ("sgd", dict(lr=0.5)),
    ("sgd", dict(lr=0.5, momentum=0.9)),
    ("sgd", dict(lr=0.5, weight_decay=0.1)),
    ("sgd", dict(lr=0.5, momentum=0.8, weight_decay=0.05)),
    ("adam", dict(lr=1e-2)),
    ("adam", dict()),
    ("adam", dict(lr=1e-2, weight_decay=0.1)),
    ("adam", dict(lr=5e-3, betas=(0.5, 0.9), eps=1e-6, weight_decay=0.01)),
]


@pytest.mark.parametrize("kind, options", OPTIMIZERS, ids=lambda value: str(value))
def test_optimizer_reproduces_torch_optim(kind, options):
    ours, theirs = twin_networks()
    assert_same_parameters(ours, theirs, "before training")
    if kind == "sgd":
        optimizer, reference = SGD(ours.param(), **options), torch.optim.SGD(theirs.parameters(), **options)
    else:
        optimizer, reference = Adam(ours.param(), **options), torch.optim.Adam(theirs.parameters(), **options)
    criterion = MSE()
    generator = torch.Generator().manual_seed(1)
    initial = ours[0].weight.clone()
    for step in range(STEPS):
        x = torch.randn(2, 3, 7, 9, generator=generator, dtype=torch.float64)
        target = torch.rand(2, 3, 8, 10, generator=generator, dtype=torch.float64)

        optimizer.zero_grad()
        loss = criterion.forward(ours.forward(x), target)
        ours.backward(criterion.backward())
        optimizer.step()

        with torch.enable_grad():
            reference.zero_grad()
            loss_ref = nn.functional.mse_loss(theirs(x), target)
            loss_ref.backward()
            reference.step()

        assert abs(loss.item() - loss_ref.item()) <= TOL, f"step {step}: loss"
        assert_same_parameters(ours, theirs, f"after step {step + 1}")
    assert (ours[0].weight - initial).abs().max() > 1e-4, "the parameters should have moved: the test would be vacuous otherwise"


def test_sgd_momentum_buffer_starts_at_the_first_gradient():
    """torch.optim.SGD's first step uses v = g (not v = (1 - dampening) g or 0.9 * 0 + g by accident)."""
    parameter, gradient = torch.tensor([1.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
    optimizer = SGD([(parameter, gradient)], lr=0.1, momentum=0.9)
    optimizer.step()
    assert parameter.item() == pytest.approx(1.0 - 0.1 * 2.0)
    optimizer.step()   # v = 0.9 * 2 + 2 = 3.8
    assert parameter.item() == pytest.approx(0.8 - 0.1 * 3.8)


def test_gradients_accumulate_until_zero_grad():
    ours, _ = twin_networks()
    generator = torch.Generator().manual_seed(2)
    first = torch.randn(1, 3, 5, 5, generator=generator, dtype=torch.float64)
    second = torch.randn(1, 3, 5, 5, generator=generator, dtype=torch.float64)

    def gradients_of(x):
        ours.zero_grad()
        out = ours.forward(x)
        ours.backward(torch.ones_like(out))
        return [gradient.clone() for _, gradient in ours.param()]

    alone_first, alone_second = gradients_of(first), gradients_of(second)
    ours.zero_grad()
    for x in (first, second):
        out = ours.forward(x)
        ours.backward(torch.ones_like(out))
    for (_, gradient), a, b in zip(ours.param(), alone_first, alone_second):
        torch.testing.assert_close(gradient, a + b, rtol=1e-12, atol=1e-12)
        assert a.abs().max() > 0
    ours.zero_grad()
    assert all((gradient == 0).all() for _, gradient in ours.param())


def test_optimizer_zero_grad_clears_the_modules_gradients():
    ours, _ = twin_networks()
    optimizer = SGD(ours.param(), lr=0.1)
    out = ours.forward(torch.randn(1, 3, 5, 5, dtype=torch.float64))
    ours.backward(torch.ones_like(out))
    assert ours[0].weight_grad.abs().max() > 0
    optimizer.zero_grad()
    assert all((gradient == 0).all() for _, gradient in ours.param())
    assert (ours[0].weight_grad == 0).all() and (ours[3].bias_grad == 0).all()


def test_param_returns_the_live_tensors():
    conv = Conv2d(2, 3, 3)
    (weight, weight_grad), (bias, bias_grad) = conv.param()
    assert weight is conv.weight and weight_grad is conv.weight_grad
    assert bias is conv.bias and bias_grad is conv.bias_grad
    before = conv.weight.clone()
    weight.add_(1.0)
    torch.testing.assert_close(conv.weight, before + 1.0)
    out = conv.forward(torch.randn(1, 2, 4, 4))
    conv.backward(torch.ones_like(out))
    assert weight_grad.abs().max() > 0   # the module wrote into the tensor we hold
    model = Sequential(conv, ReLU(), Conv2d(3, 1, 1))
    assert [id(p) for p, _ in model.param()] == [id(conv.weight), id(conv.bias), id(model[2].weight),
                                                 id(model[2].bias)]


def test_optimizer_updates_the_module_in_place():
    conv = Conv2d(1, 1, 1)
    conv.weight_grad.fill_(1.0)
    conv.bias_grad.fill_(2.0)
    weight, bias = conv.weight.item(), conv.bias.item()
    SGD(conv.param(), lr=0.25).step()
    assert conv.weight.item() == pytest.approx(weight - 0.25)
    assert conv.bias.item() == pytest.approx(bias - 0.5)
