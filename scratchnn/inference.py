"""Denoise images of any size with a trained network: check, scale, pad, tile, crop.

The course's convention holds throughout: images are (N, 3, H, W) tensors with values 0..255,
uint8 or float. Inside, the network sees floats in [0, 1].
"""
import torch
import torch.nn.functional

from .networks import SIZE_MULTIPLE
from .progress import progress_bar


def check_images(images, name="input"):
    """Raise a ValueError unless ``images`` is an (N, 3, H, W) tensor with values in 0..255."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{name}: expected a 4-D tensor (N, 3, H, W), "
                         f"got shape {tuple(images.shape)}")
    if min(images.shape) == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return  # uint8 cannot hold anything outside 0..255
    if not images.is_floating_point():
        raise ValueError(f"{name}: expected uint8 or floating-point values 0..255, "
                         f"got dtype {images.dtype}")
    low, high = images.min().item(), images.max().item()
    if not (0 <= low and high <= 255):  # also false for NaN
        raise ValueError(f"{name}: expected values in [0, 255], got values in [{low}, {high}]")
    if 0 < high <= 1:
        raise ValueError(f"{name}: expected values 0..255 (the course's convention), but the "
                         f"largest value is {high:.3g}: are these images scaled to [0, 1]? "
                         f"Multiply them by 255 first")


def pad_to_multiple(images, multiple=SIZE_MULTIPLE):
    """Pad H and W up to multiples of ``multiple`` by repeating the edge pixels ("replicate").

    Returns the padded images and the original (H, W), to cut the padding off the output.
    Replicating the border works for any size, even a 1x1 image (reflection needs 2 pixels).
    """
    height, width = images.shape[2:]
    extra_h, extra_w = -height % multiple, -width % multiple
    if extra_h or extra_w:
        images = torch.nn.functional.pad(images, (0, extra_w, 0, extra_h), mode="replicate")
    return images, (height, width)


def window_starts(size, tile, margin):
    """Where each tile's window begins along one axis: tiles every ``tile`` pixels, each window
    reaching ``margin`` pixels before (clipped at 0)."""
    return [(start, max(start - margin, 0)) for start in range(0, size, tile)]


def size_multiple_of(network):
    """The multiple a network's input H and W are padded to (``build_network`` records it)."""
    return getattr(network, "size_multiple", SIZE_MULTIPLE)


def apply_in_tiles(network, images, tile=192, margin=None, progress=None):
    """Run ``network`` on padded images (N, 3, H, W) a tile at a time, with overlapping margins.

    Why: a network keeps several maps of 48 to 100 channels per pixel for its backward pass and
    its products; for a 12-megapixel photograph at once that would be tens of gigabytes. Each
    tile is computed from a window ``margin`` pixels larger on every side and only its centre is
    kept. Because windows start at multiples of the network's ``size_multiple`` m (the stride
    grid stays aligned; ``tile`` must be a multiple of m) and the default ``margin`` 4m exceeds
    the receptive-field radius (31 pixels for the 3-level U-Net, m = 8; 4m - 1 for a U-Net of
    any depth), the result equals the whole-image result (up to rounding: the matrix products
    are split differently).

    ``progress``, when given, is a description: a progress bar then counts the tiles (a large
    photograph takes minutes on a CPU).
    """
    multiple = size_multiple_of(network)
    margin = 4 * multiple if margin is None else margin
    if tile % multiple or margin % multiple:
        raise ValueError(f"tile {tile} and margin {margin} must be multiples of {multiple}")
    height, width = images.shape[2:]
    if height <= tile + margin and width <= tile + margin:
        return network.forward(images)
    out = images.new_empty(images.shape)
    tiles = [(top, window_top, left, window_left)
             for top, window_top in window_starts(height, tile, margin)
             for left, window_left in window_starts(width, tile, margin)]
    for top, window_top, left, window_left in tile_progress(tiles, progress):
        window_bottom = min(top + tile + margin, height)
        window_right = min(left + tile + margin, width)
        window = images[:, :, window_top:window_bottom, window_left:window_right]
        result = network.forward(window)
        rows = slice(top - window_top, top - window_top + min(tile, height - top))
        cols = slice(left - window_left, left - window_left + min(tile, width - left))
        out[:, :, top:top + tile, left:left + tile] = result[:, :, rows, cols]
    return out


def tile_progress(tiles, description):
    """``tiles``, behind a progress bar when there is a ``description`` (and bars are on)."""
    if description is None:
        return tiles
    return progress_bar(tiles, f"{description}, tiles", progress=True)


def denoise(network, images, pixels_per_batch=64 * 32 * 32, progress=None):
    """Denoise (N, 3, H, W) images with values 0..255 (any H, W) into floats in [0, 255].

    Images go through the network in batches of about ``pixels_per_batch`` pixels (a large image
    alone, in tiles), so memory stays bounded. The output is on the input's device; the network
    may be on another (e.g. the GPU). ``progress``, a description, shows a bar over the tiles of
    a large image. A network whose output is NaN or infinite (broken weights) raises a
    ``ValueError`` rather than return a black image.
    """
    check_images(images)
    device, dtype = network_device_and_dtype(network)
    per_batch = max(1, pixels_per_batch // (images.shape[2] * images.shape[3]))
    return torch.cat([denoise_batch(network, images[start:start + per_batch], device, dtype,
                                    progress)
                      for start in range(0, len(images), per_batch)])


def denoise_batch(network, images, device, dtype, progress=None):
    """Scale to [0, 1], run the network (``run_network``), scale back and clip to [0, 255]."""
    denoised = run_network(network, images.to(device=device, dtype=dtype) / 255,
                           progress=progress)
    if not torch.isfinite(denoised).all():
        raise ValueError("the network's output holds NaN or infinite values: its weights are "
                         "broken (saved by a training run that diverged?); use other weights")
    return (denoised * 255).clamp(0, 255).to(images.device)


def run_network(network, images, tile=192, progress=None):
    """The network's raw output for float images scaled to [0, 1], of any H and W.

    Pads H and W to the network's multiple, runs it in tiles, crops the padding; nothing is
    checked or clipped, so values outside [0, 1] go through as they are: the standard protocol
    of the denoising literature feeds the noisy image unclipped (``benchmarks/standard_sets.py``,
    chapter 11).
    ``images`` must be on the network's device, in its dtype; ``tile`` and ``progress`` as for
    ``apply_in_tiles``.
    """
    padded, (height, width) = pad_to_multiple(images, size_multiple_of(network))
    with torch.no_grad():  # only matters for a torch.nn twin; scratchnn never records anything
        return apply_in_tiles(network, padded, tile, progress=progress)[:, :, :height, :width]


def network_device_and_dtype(network):
    """The device and dtype of a network's first parameter (scratchnn or torch.nn)."""
    if isinstance(network, torch.nn.Module):
        parameter = next(network.parameters())
    else:
        parameter = network.param()[0][0]
    return parameter.device, parameter.dtype
