"""Image files in and out for ``python -m scratchnn denoise``: read any format, write safely.

Reading applies the EXIF orientation (a phone photo stored sideways comes out upright), turns
grayscale into three equal channels and sets an alpha channel aside, to be written back unchanged.
Writing chooses the format from the file's extension *before* anything touches the disk, encodes
the whole image in memory, and only then replaces the file in one atomic step: a failed write
never leaves a truncated or empty file behind.

Everything that can be checked without the pixels is checked before any work
(``check_before_denoising``): the input can be opened, the output's format can store its kind of
image, the output's folder exists and can be written. A 12-megapixel photograph takes minutes
to denoise on a CPU; a mistake must not be found after them.
"""
import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .files import check_can_write_in, write_atomically

# Modes Pillow may open, and the mode we read each one as.
AS_RGB = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX")
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
# Formats that lose detail to save space, and the quality they are written at by default
# (Pillow's own default, 75, leaves visible blocks: the opposite of what a denoiser is for).
LOSSY_FORMATS = ("JPEG", "WEBP")
DEFAULT_QUALITY = 95


# --- reading -------------------------------------------------------------------------------------


def read_image(path):
    """Read an image file as a (1, 3, H, W) float tensor with values 0..255, plus what to restore.

    Returns ``(rgb, colour_channels, alpha)``: ``colour_channels`` is 1 for a grayscale file
    (written back as grayscale), and ``alpha`` is an (H, W, 0 or 1) tensor. 16-bit images are
    scaled to 0..255.
    """
    image = ImageOps.exif_transpose(open_image(path))
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


def open_image(path, decode=True):
    """Open ``path`` with Pillow; with ``decode=False`` only its header is read (fast).

    Pillow refuses images of more than about 179 million pixels, which could be "decompression
    bombs" (a small file that fills the memory once decoded); that becomes one clear error. Its
    warning between 89 and 179 million pixels is silenced: such images are real photographs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file") if not path.exists() else \
            ValueError(f"{path} is a folder; expected an image file (to denoise every image "
                       f"in a folder, give --out-dir)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
            if decode:
                image.load()  # decode now, so a truncated file fails here with our message
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path} is too large to read safely ({error}); if it is a genuine "
                         f"image, cut it into pieces or scale it down first") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{path} is not an image file that can be read "
                         f"({type(error).__name__}: {error})") from None
    return image


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
        raise unsupported_mode(image.mode, path)
    return torch.from_numpy(array.astype(np.float32))


def unsupported_mode(mode, path):
    return ValueError(f"{path}: expected a grayscale, RGB or RGBA image with 8 or 16 bits per "
                      f"channel, got Pillow mode {mode!r}")


def image_layout(image, path):
    """``(colour_channels, alpha_channels)`` that ``read_image`` returns for an opened image,
    known from its header alone: 1 or 3 colour channels, 0 or 1 alpha channel."""
    if image.mode in ("P", "PA"):
        return 3, int(image.mode == "PA" or "transparency" in image.info)
    if image.mode in ("1", "L", "F") or image.mode in SIXTEEN_BIT:
        return 1, 0
    if image.mode in ("RGB",) + AS_RGB:
        return 3, 0
    if image.mode in ("LA", "RGBA"):
        return len(image.mode) - 1, 1
    raise unsupported_mode(image.mode, path)


def image_files_in(folder):
    """The image files in ``folder`` (not in its subfolders), sorted by name.

    An image file is one whose extension Pillow can open; hidden files are skipped.
    """
    Image.init()
    readable = {extension for extension, name in Image.registered_extensions().items()
                if name in Image.OPEN}
    files = sorted(path for path in Path(folder).iterdir()
                   if path.is_file() and path.suffix.lower() in readable
                   and not path.name.startswith("."))
    if not files:
        raise ValueError(f"{folder} holds no image files")
    return files


# --- writing -------------------------------------------------------------------------------------


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


def save_options(file_format, quality):
    """Pillow's options for ``file_format``: the quality, for the lossy formats only."""
    return {"quality": quality} if file_format in LOSSY_FORMATS and quality else {}


def encode_image(rgb, colour_channels, alpha, file_format, quality=None):
    """The bytes of a (1, 3, H, W) image, values 0..255, in ``file_format``, 8 bits per channel.

    ``quality`` (1 to 100) applies to JPEG and WebP; None keeps Pillow's default.
    """
    image = rgb[0].permute(1, 2, 0)
    if colour_channels == 1:
        image = image.mean(dim=2, keepdim=True)
    image = torch.cat([image, alpha], dim=2).round().clamp(0, 255).to(torch.uint8).numpy()
    pillow = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    buffer = io.BytesIO()
    try:
        pillow.save(buffer, format=file_format, **save_options(file_format, quality))
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"the {file_format} format cannot store this {pillow.mode} image "
                         f"({error}); choose another extension, e.g. .png") from None
    return buffer.getvalue()


def write_image(path, rgb, colour_channels, alpha, quality=None):
    """Write a (1, 3, H, W) image with values 0..255, grayscale and alpha restored.

    The format comes from the extension; the file is encoded in memory first and then written
    atomically, so an existing file at ``path`` survives any failure.
    """
    encoded = encode_image(rgb, colour_channels, alpha, image_format(path), quality)
    write_atomically(path, encoded)


# --- every check before the work -----------------------------------------------------------------


def check_before_denoising(input_path, output_path, quality=None):
    """Everything that can fail about denoising ``input_path`` into ``output_path``, checked
    in a fraction of a second, before any pixel is computed (the output's folder apart:
    ``check_output_folder``).

    The input is opened (its header only: a file that is no image, or a decompression bomb, is
    refused here); the output is another file, named with a known extension, in a format that
    can store the input's kind of image (RGBA cannot become a JPEG): a one-pixel image of the
    same kind is encoded to find out.
    """
    image = open_image(input_path, decode=False)
    check_distinct_paths(input_path, output_path)
    file_format = image_format(output_path)
    colour_channels, alpha_channels = image_layout(image, input_path)
    try:
        encode_image(torch.zeros(1, 3, 1, 1), colour_channels,
                     torch.zeros(1, 1, alpha_channels), file_format, quality)
    except ValueError as error:
        raise ValueError(f"cannot write {input_path} as {output_path}: {error}") from None


def check_output_folder(output_path):
    """The folder of ``output_path`` must exist and be writable (it is not made for you: a
    typing mistake in its name would otherwise leave the image somewhere unexpected)."""
    folder = Path(output_path).absolute().parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {output_path}: the folder {folder} does not "
                                f"exist; create it first")
    check_can_write_in(folder, f"cannot write {output_path}")


def check_distinct_paths(input_path, output_path):
    """Refuse to write the result over the image it is computed from."""
    same = Path(input_path).resolve() == Path(output_path).resolve()
    if not same and Path(output_path).exists():
        same = os.path.samefile(input_path, output_path)  # a hard or symbolic link to the input
    if same:
        raise ValueError(f"the output {output_path} is the input image itself; "
                         f"write the denoised image to another file")
