"""Image files in and out for ``python -m scratchnn denoise``: read any format, write safely.

Reading applies the EXIF orientation (a phone photo stored sideways comes out upright), turns
grayscale into three equal channels and sets an alpha channel aside, to be written back unchanged.
Writing chooses the format from the file's extension *before* anything touches the disk, encodes
the whole image in memory, and only then replaces the file in one atomic step: a failed write
never leaves a truncated or empty file behind.
"""
import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .files import write_atomically

# Modes Pillow may open, and the mode we read each one as.
AS_RGB = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX")
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_image(path):
    """Read an image file as a (1, 3, H, W) float tensor with values 0..255, plus what to restore.

    Returns ``(rgb, colour_channels, alpha)``: ``colour_channels`` is 1 for a grayscale file
    (written back as grayscale), and ``alpha`` is an (H, W, 0 or 1) tensor. 16-bit images are
    scaled to 0..255.
    """
    image = open_upright(path)
    if image.mode in ("P", "PA"):  # a palette: look the colours up, keeping any transparency
        has_alpha = image.mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif image.mode == "1" or image.mode in AS_RGB:
        image = image.convert("L" if image.mode == "1" else "RGB")
    values = pixel_values(image, path)
    if values.ndim == 2:
        values = values[:, :, None]
    colour_channels = 1 if values.shape[2] in (1, 2) else 3
    colours, alpha = values[:, :, :colour_channels], values[:, :, colour_channels:]
    rgb = colours.expand(-1, -1, 3) if colour_channels == 1 else colours
    return rgb.permute(2, 0, 1)[None].contiguous(), colour_channels, alpha


def open_upright(path):
    """Open ``path`` with Pillow and turn it as its EXIF orientation says."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file") if not path.exists() else \
            ValueError(f"{path} is a folder; expected an image file")
    try:
        image = Image.open(path)
        image.load()  # decode now, so a truncated file fails here with our message
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{path} is not an image file that can be read "
                         f"({type(error).__name__}: {error})") from None
    return ImageOps.exif_transpose(image)


def pixel_values(image, path):
    """The pixels of an opened image as a float32 tensor with values 0..255."""
    array = np.asarray(image)
    if image.mode in SIXTEEN_BIT:
        return torch.from_numpy(array.astype(np.float32) / 257).clamp(0, 255)
    if image.mode == "F":
        if not (array.min() >= 0 and array.max() <= 1):
            raise ValueError(f"{path}: floating-point pixels must lie in [0, 1], got "
                             f"[{array.min()}, {array.max()}]")
        return torch.from_numpy(array.astype(np.float32) * 255)
    if array.dtype != np.uint8 or image.mode not in ("L", "LA", "RGB", "RGBA"):
        raise ValueError(f"{path}: expected a grayscale, RGB or RGBA image with 8 or 16 bits per "
                         f"channel, got Pillow mode {image.mode!r}")
    return torch.from_numpy(array.astype(np.float32))


def image_format(path):
    """The Pillow format that the extension of ``path`` names, e.g. ``"PNG"`` for ``x.png``."""
    Image.init()  # registers every format Pillow knows
    extension = Path(path).suffix.lower()
    known = Image.registered_extensions()
    if extension not in known or known[extension] not in Image.SAVE:
        common = ".png, .jpg, .tif, .bmp, .webp"
        what = f"extension {extension!r}" if extension else "no extension"
        raise ValueError(f"cannot tell which image format to write for {path} ({what}); "
                         f"name the output with one of {common}")
    return known[extension]


def encode_image(rgb, colour_channels, alpha, file_format):
    """The bytes of a (1, 3, H, W) image, values 0..255, in ``file_format``, 8 bits per channel."""
    image = rgb[0].permute(1, 2, 0)
    if colour_channels == 1:
        image = image.mean(dim=2, keepdim=True)
    image = torch.cat([image, alpha], dim=2).round().clamp(0, 255).to(torch.uint8).numpy()
    pillow = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    buffer = io.BytesIO()
    try:
        pillow.save(buffer, format=file_format)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"the {file_format} format cannot store this {pillow.mode} image "
                         f"({error}); choose another extension, e.g. .png") from None
    return buffer.getvalue()


def write_image(path, rgb, colour_channels, alpha):
    """Write a (1, 3, H, W) image with values 0..255, grayscale and alpha restored.

    The format comes from the extension; the file is encoded in memory first and then written
    atomically, so an existing file at ``path`` survives any failure.
    """
    encoded = encode_image(rgb, colour_channels, alpha, image_format(path))
    write_atomically(path, lambda temporary: Path(temporary).write_bytes(encoded))


def check_distinct_paths(input_path, output_path):
    """Refuse to write the result over the image it is computed from."""
    same = Path(input_path).resolve() == Path(output_path).resolve()
    if not same and Path(output_path).exists():
        same = os.path.samefile(input_path, output_path)  # a hard or symbolic link to the input
    if same:
        raise ValueError(f"the output {output_path} is the input image itself; "
                         f"write the denoised image to another file")
