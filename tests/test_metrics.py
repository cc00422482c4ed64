"""Tests for scratchnn.metrics.psnr: against scikit-image and against hand computation."""
import math

import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from scratchnn.data import make_validation_set, to_float
from scratchnn.metrics import psnr, psnr_0_255


def _skimage_mean_psnr(denoised, ground_truth, data_range):
    values = [peak_signal_noise_ratio(g.numpy(), d.numpy(), data_range=data_range)
              for d, g in zip(denoised, ground_truth)]
    return sum(values) / len(values)


def test_psnr_matches_scikit_image_image_by_image():
    noisy, clean = make_validation_set(100)
    noisy, clean = to_float(noisy).double(), to_float(clean).double()
    assert psnr(noisy, clean) == pytest.approx(_skimage_mean_psnr(noisy, clean, 1.0), abs=1e-9)


def test_psnr_matches_scikit_image_on_random_floats():
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(5, 3, 16, 16, generator=generator, dtype=torch.float64)
    noise = 0.05 * torch.randn(5, 3, 16, 16, generator=generator, dtype=torch.float64)
    denoised = (clean + noise).clamp(0, 1)
    assert psnr(denoised, clean) == pytest.approx(_skimage_mean_psnr(denoised, clean, 1.0),
                                                  abs=1e-9)


def test_psnr_by_hand():
    ground_truth = torch.zeros(2, 3, 4, 4)
    denoised = torch.zeros(2, 3, 4, 4)
    denoised[0] = 0.1   # MSE 0.01   -> 20 dB
    denoised[1] = 0.01  # MSE 0.0001 -> 40 dB
    assert psnr(denoised[:1], ground_truth[:1]) == pytest.approx(20.0)
    # The mean of per-image values (30 dB), not the PSNR of the mean MSE (about 23 dB).
    assert psnr(denoised, ground_truth) == pytest.approx(30.0)
    assert psnr(denoised * 255, ground_truth * 255, max_range=255.0) == pytest.approx(30.0)


def test_single_image_is_a_batch_of_one():
    generator = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 3, 8, 8, generator=generator)
    assert psnr(a, b) == pytest.approx(psnr(a[None], b[None]))


def test_psnr_0_255_equals_psnr_of_images_scaled_to_0_1():
    noisy, clean = make_validation_set(50)
    expected = psnr(to_float(noisy), to_float(clean))
    assert psnr_0_255(noisy, clean) == pytest.approx(expected, abs=1e-4)
    assert psnr_0_255(noisy.float(), clean.float()) == pytest.approx(expected, abs=1e-4)


def test_uint8_inputs_do_not_wrap_around():
    black = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    white = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    assert psnr_0_255(black, white) == pytest.approx(0.0)  # MSE = 255**2


def test_identical_images_give_a_large_finite_psnr():
    images = torch.rand(3, 3, 8, 8)
    value = psnr(images, images)
    assert math.isfinite(value) and value == pytest.approx(100.0)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 9))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or \(C, H, W\)"):
        psnr(torch.zeros(8, 8), torch.zeros(8, 8))
