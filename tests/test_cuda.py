"""CUDA smoke test: the framework runs on a GPU and agrees with the same computation on the
CPU."""
import pytest
import torch

from scratchnn import (MSE, SGD, Adam, Conv2d, NearestUpsampling, ReLU, Sequential, Sigmoid,
                       Upsampling)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# Max abs difference between the GPU and the CPU (different summation orders; TF32 is off by
# default for convolutions done as matmul, but be lenient in float32).
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-10}


def network(backward_form):
    return Sequential(
        Conv2d(3, 16, 2, stride=2, backward_form=backward_form), ReLU(),
        Conv2d(16, 16, 2, stride=2, backward_form=backward_form), ReLU(),
        NearestUpsampling(2), Conv2d(16, 16, 3, padding=1, backward_form=backward_form), ReLU(),
        Upsampling(16, 8, 3, padding=1), ReLU(),
        Conv2d(8, 3, 3, padding=1, dilation=1, backward_form=backward_form), Sigmoid())


def train(model, optimizer, inputs, targets):
    criterion, losses, input_grads = MSE(), [], []
    for x, target in zip(inputs, targets):
        optimizer.zero_grad()
        losses.append(criterion.forward(model.forward(x), target))
        input_grads.append(model.backward(criterion.backward()))
        optimizer.step()
    return losses, input_grads


# Adam only in float64: in float32 a weight gradient that is ~0 may round to opposite signs on the
# two devices, and Adam's normalised step then moves that weight by +lr on one and -lr on the
# other.
@pytest.mark.parametrize("dtype, optimizer", [(torch.float32, "sgd"), (torch.float64, "sgd"),
                                              (torch.float64, "adam")],
                         ids=["float32-sgd", "float64-sgd", "float64-adam"])
@pytest.mark.parametrize("backward_form", ["fold", "convolution"])
def test_cuda_matches_cpu(dtype, backward_form, optimizer):
    torch.manual_seed(0)
    cpu_model = network(backward_form).to(dtype=dtype)
    torch.manual_seed(0)
    gpu_model = network(backward_form).to(device="cuda", dtype=dtype)
    for (cpu_parameter, _), (gpu_parameter, gpu_gradient) in zip(cpu_model.param(),
                                                                 gpu_model.param()):
        assert gpu_parameter.is_cuda and gpu_gradient.is_cuda and gpu_parameter.dtype == dtype
        assert torch.equal(cpu_parameter, gpu_parameter.cpu())

    def make_optimizer(model):
        return (SGD(model.param(), lr=1.0, momentum=0.9, weight_decay=1e-4) if optimizer == "sgd"
                else Adam(model.param(), lr=1e-3, weight_decay=1e-4))

    generator = torch.Generator().manual_seed(1)
    inputs = [torch.rand(4, 3, 32, 32, generator=generator, dtype=dtype) for _ in range(3)]
    targets = [torch.rand(4, 3, 32, 32, generator=generator, dtype=dtype) for _ in range(3)]
    with torch.set_grad_enabled(False):
        cpu_losses, cpu_grads = train(cpu_model, make_optimizer(cpu_model), inputs, targets)
        gpu_losses, gpu_grads = train(gpu_model, make_optimizer(gpu_model),
                                      [x.cuda() for x in inputs], [t.cuda() for t in targets])
    tolerance = TOLERANCE[dtype]
    for step, (cpu_loss, gpu_loss, cpu_grad, gpu_grad) in enumerate(zip(cpu_losses, gpu_losses,
                                                                        cpu_grads, gpu_grads)):
        assert gpu_loss.is_cuda and gpu_grad.is_cuda and gpu_grad.dtype == dtype
        assert abs(cpu_loss.item() - gpu_loss.item()) <= tolerance, f"step {step}: loss"
        # Input gradients are ~1e-5 (MSE averages over N*C*H*W): compare them relative to their
        # size.
        scale = cpu_grad.abs().max().item()
        assert (cpu_grad - gpu_grad.cpu()).abs().max().item() <= tolerance * scale, (
            f"step {step}: input grad")
    for name, (cpu_parameter, _), (gpu_parameter, _) in zip(cpu_model.state_dict(),
                                                            cpu_model.param(), gpu_model.param()):
        error = (cpu_parameter - gpu_parameter.cpu()).abs().max().item()
        assert error <= tolerance, f"{name} differs by {error:.2e} after training"


def test_cuda_input_on_a_cpu_model_is_a_clear_error():
    conv = Conv2d(3, 2, 3)
    with pytest.raises(ValueError, match=r"Conv2d: expected input .* on cpu, got .* on cuda"):
        conv.forward(torch.randn(1, 3, 8, 8, device="cuda"))


def test_state_dict_from_cuda_loads_on_cpu(tmp_path):
    torch.manual_seed(0)
    gpu_model = network("fold").to(device="cuda")
    torch.save(gpu_model.state_dict(), tmp_path / "weights.pth")
    cpu_model = network("fold")
    cpu_model.load_state_dict(torch.load(tmp_path / "weights.pth", map_location="cpu",
                                         weights_only=True))
    x = torch.rand(1, 3, 16, 16)
    with torch.set_grad_enabled(False):
        torch.testing.assert_close(cpu_model.forward(x), gpu_model.forward(x.cuda()).cpu(),
                                   rtol=1e-4, atol=1e-5)
