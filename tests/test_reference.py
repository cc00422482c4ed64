"""The torch.nn twin: same parameter names, same outputs, same training steps as the from-scratch
network."""
import pytest
import torch

from scratchnn import build_network
from scratchnn.networks import ARCHITECTURES
from scratchnn.reference import ReferenceUpsampling, build_reference, copy_weights
from scratchnn.settings import TrainSettings
from scratchnn.train import train

KINDS = sorted(ARCHITECTURES)


pytestmark = pytest.mark.usefixtures("one_thread")


def twins(kind, channels=6, dtype=torch.float64):
    """A from-scratch network and its torch.nn twin with the same weights."""
    torch.manual_seed(0)
    scratch = build_network(kind, channels).to(dtype=dtype)
    reference = build_reference(kind, channels).to(dtype=dtype)
    copy_weights(scratch, reference)
    return scratch, reference


@pytest.mark.parametrize("kind", KINDS)
def test_parameter_names_and_shapes_are_identical(kind):
    scratch, reference = build_network(kind, 5), build_reference(kind, 5)
    assert {k: tuple(v.shape) for k, v in scratch.state_dict().items()} == \
           {k: tuple(v.shape) for k, v in reference.state_dict().items()}


def test_reference_upsampling_names_its_convolution_conv():
    block = ReferenceUpsampling(4, 2, kernel_size=3, padding=1)
    assert set(block.state_dict()) == {"conv.weight", "conv.bias"}
    assert block(torch.rand(1, 4, 5, 6)).shape == (1, 2, 10, 12)


@pytest.mark.parametrize("kind", KINDS)
def test_copy_weights_works_in_both_directions(kind):
    scratch, reference = build_network(kind, 5), build_reference(kind, 5)
    copy_weights(reference, scratch)
    assert all(torch.equal(scratch.state_dict()[k], v.detach())
               for k, v in reference.state_dict().items())
    fresh = build_reference(kind, 5)
    copy_weights(scratch, fresh)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in scratch.state_dict().items())


@pytest.mark.parametrize("kind", KINDS)
def test_same_weights_give_the_same_output_and_input_gradient(kind):
    scratch, reference = twins(kind)
    x = torch.rand(2, 3, 16, 24, dtype=torch.float64, requires_grad=True)
    out = reference(x)
    out.sum().backward()
    assert (scratch.forward(x.detach()) - out.detach()).abs().max() < 1e-12
    assert (scratch.backward(torch.ones_like(out)) - x.grad).abs().max() < 1e-12


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("optimizer, lr, momentum", [("sgd", 0.5, 0.0), ("sgd", 0.5, 0.9),
                                                     ("adam", 1e-2, 0.0)])
def test_training_steps_give_the_same_parameters(kind, optimizer, lr, momentum):
    """Two mini-batches through the shared loop: the second step also checks momentum / Adam
    state."""
    scratch, reference = twins(kind)
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randint(0, 256, (8, 3, 16, 24), dtype=torch.uint8, generator=generator)
    targets = torch.randint(0, 256, (8, 3, 16, 24), dtype=torch.uint8, generator=generator)
    settings = dict(progress=False,
                    settings=TrainSettings(optimizer=optimizer, lr=lr, momentum=momentum,
                                           batch_size=4, device="cpu", dtype=torch.float64,
                                           seed=3))
    scratch_history = train(scratch, inputs, targets, 1, **settings)
    reference_history = train(reference, inputs, targets, 1, **settings)
    ours, theirs = scratch.state_dict(), reference.state_dict()
    moved = max((ours[name] - twins(kind)[0].state_dict()[name]).abs().max().item()
                for name in ours)
    assert moved > 1e-4, "the parameters should have changed"
    assert max((ours[name] - theirs[name].detach()).abs().max().item() for name in ours) <= 1e-9
    assert abs(scratch_history["train_loss"][1] - reference_history["train_loss"][1]) <= 1e-12
