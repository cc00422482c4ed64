"""SGD and Adam against torch.optim, step for step; their state_dict; the gradient bookkeeping."""
import io

import pytest
import torch
from torch import nn

from scratchnn import MSE, SGD, Adam, Conv2d, ReLU, Sequential

from helpers import small_network, twin_networks

STEPS = 5
TOL = 1e-9


pytestmark = pytest.mark.usefixtures("one_thread", "no_autograd")


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
        optimizer = SGD(ours.param(), **options)
        reference = torch.optim.SGD(theirs.parameters(), **options)
    else:
        optimizer = Adam(ours.param(), **options)
        reference = torch.optim.Adam(theirs.parameters(), **options)
    criterion = MSE()
    generator = torch.Generator().manual_seed(1)
    initial = ours[0].weight.clone()
    for step in range(STEPS):
        x = torch.randn(2, 3, 7, 9, generator=generator, dtype=torch.float64)
        target = torch.rand(2, 3, 12, 16, generator=generator, dtype=torch.float64)

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
    moved = (ours[0].weight - initial).abs().max()
    assert moved > 1e-4, "the parameters should have moved: the test would be vacuous otherwise"


def test_sgd_momentum_buffer_starts_at_the_first_gradient():
    """torch.optim.SGD's first step uses v = g (not (1 - dampening) g, nor 0.9 * 0 + g)."""
    parameter = torch.tensor([1.0], dtype=torch.float64)
    gradient = torch.tensor([2.0], dtype=torch.float64)
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
    assert (ours[0].weight_grad == 0).all() and (ours[5].conv.bias_grad == 0).all()


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
    assert [id(p) for p, _ in model.param()] == [id(conv.weight), id(conv.bias),
                                                 id(model[2].weight), id(model[2].bias)]


def test_optimizer_updates_the_module_in_place():
    conv = Conv2d(1, 1, 1)
    conv.weight_grad.fill_(1.0)
    conv.bias_grad.fill_(2.0)
    weight, bias = conv.weight.item(), conv.bias.item()
    SGD(conv.param(), lr=0.25).step()
    assert conv.weight.item() == pytest.approx(weight - 0.25)
    assert conv.bias.item() == pytest.approx(bias - 0.5)


# --------------------------------------------------------------------------------------------
# state_dict / load_state_dict: save, restore, resume exactly
# --------------------------------------------------------------------------------------------

def make_optimizer(kind, network):
    if kind == "SGD":
        return SGD(network.param(), lr=0.5, momentum=0.9, weight_decay=0.01)
    return Adam(network.param(), lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01)


def train_steps(network, optimizer, steps, seed):
    criterion, generator = MSE(), torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(2, 3, 6, 4, generator=generator, dtype=torch.float64)
        target = torch.rand(2, 3, 12, 8, generator=generator, dtype=torch.float64)
        optimizer.zero_grad()
        criterion.forward(network.forward(x), target)
        network.backward(criterion.backward())
        optimizer.step()


def through_a_file(state):
    """``state`` saved with torch.save and read back with weights_only=True."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def same_tensors(first, second):
    return all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_resumed_optimizer_continues_bit_for_bit(kind):
    network, _ = twin_networks(seed=1)
    optimizer = make_optimizer(kind, network)
    train_steps(network, optimizer, steps=3, seed=2)
    saved_weights = {name: tensor.clone() for name, tensor in network.state_dict().items()}
    saved_state = through_a_file(optimizer.state_dict())

    copy, _ = twin_networks(seed=9)                   # other weights: the load must replace them
    copy.load_state_dict(saved_weights)
    resumed = make_optimizer(kind, copy)
    resumed.lr = 123.0                                # ... and its hyper-parameters
    resumed.load_state_dict(saved_state)
    assert resumed.lr == optimizer.lr

    train_steps(network, optimizer, steps=2, seed=3)
    train_steps(copy, resumed, steps=2, seed=3)
    for (mine, _), (theirs, _) in zip(network.param(), copy.param()):
        assert torch.equal(mine, theirs)


def test_sgd_state_dict_layout():
    network = small_network().to(dtype=torch.float64)
    optimizer = SGD(network.param(), lr=0.5, momentum=0.9)
    state = optimizer.state_dict()
    assert state == {"kind": "SGD", "lr": 0.5, "momentum": 0.9, "weight_decay": 0.0,
                     "velocities": [None] * 5}           # no buffer before the first step
    train_steps(network, optimizer, steps=1, seed=4)
    state = optimizer.state_dict()
    assert [tuple(v.shape) for v in state["velocities"]] == [tuple(p.shape)
                                                             for p, _ in network.param()]
    assert all(v is not mine for v, mine in zip(state["velocities"], optimizer.velocities))
    state["velocities"][0].fill_(7.0)                    # a copy: the optimizer keeps its own
    assert not (optimizer.velocities[0] == 7.0).all()


def test_adam_state_dict_layout():
    network = small_network().to(dtype=torch.float64)
    optimizer = Adam(network.param(), lr=0.01)
    train_steps(network, optimizer, steps=2, seed=5)
    state = through_a_file(optimizer.state_dict())
    assert sorted(state) == ["betas", "eps", "kind", "lr", "means", "squares", "steps",
                             "weight_decay"]
    assert state["kind"] == "Adam" and state["steps"] == 2 and state["betas"] == [0.9, 0.999]
    assert same_tensors(state["means"], optimizer.means)
    assert same_tensors(state["squares"], optimizer.squares)
    assert all(a is not b for a, b in zip(optimizer.state_dict()["means"], optimizer.means))


def test_load_state_dict_moves_buffers_to_each_parameters_dtype():
    network = small_network().to(dtype=torch.float64)
    optimizer = Adam(network.param())
    train_steps(network, optimizer, steps=1, seed=6)
    state = optimizer.state_dict()
    state["means"] = [mean.float() for mean in state["means"]]
    optimizer.load_state_dict(state)
    assert all(mean.dtype == torch.float64 for mean in optimizer.means)


def test_load_state_dict_of_an_older_layout_keeps_the_hyper_parameters():
    """States saved before the optimizers had their own state_dict held only lr and buffers."""
    network = small_network()
    sgd = SGD(network.param(), lr=0.1, momentum=0.9)
    sgd.load_state_dict({"kind": "SGD", "lr": 0.2, "velocities": [None] * 5})
    assert (sgd.lr, sgd.momentum, sgd.weight_decay) == (0.2, 0.9, 0.0)
    adam = Adam(network.param(), betas=(0.5, 0.6))
    old = {"kind": "Adam", "lr": 0.3, "steps": 4,
           "means": [p.clone() for p, _ in network.param()],
           "squares": [p.clone() for p, _ in network.param()]}
    adam.load_state_dict(old)
    assert (adam.lr, adam.betas, adam.steps) == (0.3, (0.5, 0.6), 4)


def mismatched_states(kind, state):
    """Ways a saved state can fail to fit an optimizer of ``kind`` over small_network()."""
    buffers = ["velocities"] if kind == "SGD" else ["means", "squares"]
    other = "Adam" if kind == "SGD" else "SGD"
    cases = {"not a dict": [state],
             "another kind": {**state, "kind": other},
             "no kind": {key: value for key, value in state.items() if key != "kind"},
             "negative lr": {**state, "lr": -1.0},
             "lr as text": {**state, "lr": "0.1"}}
    for key in buffers:
        cases[f"{key} missing"] = {k: v for k, v in state.items() if k != key}
        cases[f"{key} one short"] = {**state, key: state[key][:-1]}
        cases[f"{key} one extra"] = {**state, key: state[key] + [state[key][0]]}
        cases[f"{key} not a list"] = {**state, key: state[key][0]}
        wrong_shape = list(state[key])
        wrong_shape[2] = torch.zeros(3)
        cases[f"{key} of a wrong shape"] = {**state, key: wrong_shape}
        cases[f"{key} holding text"] = {**state, key: ["x"] * len(state[key])}
    if kind == "Adam":
        cases["steps missing"] = {k: v for k, v in state.items() if k != "steps"}
        cases["steps negative"] = {**state, "steps": -1}
        cases["steps a float"] = {**state, "steps": 2.0}
        cases["betas of 3"] = {**state, "betas": [0.9, 0.99, 0.999]}
    return cases


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_load_state_dict_mismatch_raises_and_changes_nothing(kind):
    network = small_network().to(dtype=torch.float64)
    optimizer = make_optimizer(kind, network)
    train_steps(network, optimizer, steps=2, seed=7)
    before = optimizer.state_dict()
    for case, state in mismatched_states(kind, optimizer.state_dict()).items():
        with pytest.raises(ValueError, match=rf"^{kind}.load_state_dict: expected "):
            optimizer.load_state_dict(state)
        after = optimizer.state_dict()
        assert sorted(after) == sorted(before), case
        for key, value in before.items():
            if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
                assert same_tensors(after[key], value), f"{case} changed {key}"
            else:
                assert after[key] == value, f"{case} changed {key}"


def test_load_state_dict_messages():
    network = small_network()
    sgd = SGD(network.param(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"^SGD.load_state_dict: expected a state of kind 'SGD', "
                                         r"got kind 'Adam'$"):
        sgd.load_state_dict(Adam(network.param()).state_dict())
    state = sgd.state_dict()
    with pytest.raises(ValueError, match=r"^SGD.load_state_dict: expected 'velocities' to be a "
                                         r"list of 5 tensors, one per parameter, got 4 of them$"):
        sgd.load_state_dict({**state, "velocities": [None] * 4})
    state["velocities"][2] = torch.zeros(4, 4, 3, 2)
    with pytest.raises(ValueError, match=r"^SGD.load_state_dict: expected 'velocities'\[2\] of "
                                         r"shape \(4, 4, 3, 3\), got \(4, 4, 3, 2\)$"):
        sgd.load_state_dict(state)
