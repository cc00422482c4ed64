"""Peak signal-to-noise ratio (PSNR), the course's measure of denoising quality.

For one image with values in [0, max_range] and mean squared error MSE
(averaged over channels, height and width),

    PSNR = 10 * log10(max_range**2 / MSE) = 20 * log10(max_range) - 10 * log10(MSE)

in decibels; higher is better. For a batch the course averages the per-image
PSNR values (it does not take the PSNR of the batch-wide MSE).
"""
import torch

# Identical images have MSE = 0 and an infinite PSNR, which would make the
# batch mean infinite too. We floor each image's MSE at 1e-10 * max_range**2,
# which caps one image's PSNR at 100 dB -- far above anything a denoiser reaches.
MIN_RELATIVE_MSE = 1e-10


def psnr(denoised, ground_truth, max_range=1.0):
    """Mean PSNR in dB over a batch of images, as a Python float.

    ``denoised`` and ``ground_truth`` have the same shape: (N, C, H, W) for a
    batch or (C, H, W) for one image, with values in [0, max_range] (use
    ``max_range=1.0`` for images scaled to [0, 1], 255 for 0..255; see
    ``psnr_0_255``). Any dtype works: values are converted to float64 first,
    so uint8 inputs cannot wrap around when subtracted.
    """
    if denoised.shape != ground_truth.shape:
        raise ValueError(f"psnr: denoised and ground_truth must have the same shape, "
                         f"got {tuple(denoised.shape)} and {tuple(ground_truth.shape)}")
    if denoised.ndim == 3:
        denoised, ground_truth = denoised[None], ground_truth[None]  # one image -> batch of one
    if denoised.ndim != 4:
        raise ValueError(f"psnr: expected images of shape (N, C, H, W) or (C, H, W), "
                         f"got shape {tuple(denoised.shape)}")
    error = denoised.to(torch.float64) - ground_truth.to(torch.float64)
    mse_per_image = (error ** 2).mean(dim=(1, 2, 3))
    mse_per_image = mse_per_image.clamp(min=MIN_RELATIVE_MSE * max_range ** 2)
    psnr_per_image = 10 * torch.log10(max_range ** 2 / mse_per_image)
    return psnr_per_image.mean().item()


def psnr_0_255(denoised, ground_truth):
    """PSNR for images with values 0..255 (uint8 or float), e.g. the course's data.

    Same number as scaling both to [0, 1] and calling ``psnr``.
    """
    return psnr(denoised, ground_truth, max_range=255.0)
