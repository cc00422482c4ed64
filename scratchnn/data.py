"""Data for Noise2Noise: clean photographs, noise models and noisy pairs.

Images are stored the way the course stores them: ``uint8`` tensors of shape
(N, 3, H, W) with values 0..255. Noise is added to float images in [0, 1],
then clipped and rounded back to ``uint8``. Everything random is drawn from
a ``torch.Generator`` seeded by the caller, so a seed always gives the same data.
Methods ending in ``_`` (``mul_``, ``clamp_``) change a tensor in place; we only
use them on tensors just created here, which saves time and memory at 50,000 pairs.
"""
from dataclasses import dataclass
from functools import lru_cache

import torch

# Natural RGB photographs that ship inside the scikit-image and scikit-learn
# wheels, so the book needs no download. Scientific images (Hubble, retina,
# microscopy) are left out: large black or unnatural areas would teach the
# network little about photographs. The validation photographs (a cat's fur,
# a flower) are never cropped for training, so validation PSNR measures how
# well the denoiser generalises to images it has not seen.
TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "motorcycle", "china")
VALIDATION_PHOTOS = ("chelsea", "flower")
# A second held-out set, more varied: grey photographs (a camera man, coins, a clock, the moon),
# textures (brick, grass, gravel) and a stained tissue section. Grey images are copied into the
# three colour channels; the noise is still drawn independently in each channel.
VARIED_VALIDATION_PHOTOS = ("camera", "coins", "clock", "moon", "brick", "grass", "gravel",
                            "immunohistochemistry")
GREY_PHOTOS = ("camera", "coins", "clock", "moon", "brick", "grass", "gravel")
ALL_PHOTOS = TRAIN_PHOTOS + VALIDATION_PHOTOS + VARIED_VALIDATION_PHOTOS


def _read_photo(name):
    """Read one photograph as a numpy array (H, W, 3) from the library that ships it."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    if name in ("china", "flower"):
        return load_sample_image(name + ".jpg")
    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]  # the left view of a stereo pair
    photo = getattr(skimage.data, name)()
    if name in GREY_PHOTOS:
        photo = photo[:, :, None].repeat(3, axis=2)  # (H, W) -> (H, W, 3)
    return photo


@lru_cache(maxsize=None)
def _cached_photo(name):
    if name not in ALL_PHOTOS:
        raise ValueError(f"unknown photo {name!r}; expected one of {ALL_PHOTOS}")
    return images_to_uint8_chw(_read_photo(name)[None])[0]


def load_photo(name):
    """Return the named photograph as a uint8 tensor of shape (3, H, W)."""
    return _cached_photo(name).clone()  # a copy, so callers cannot spoil the cache


def to_float(images, dtype=None):
    """Scale images with values 0..255 (uint8 or float) to floats in [0, 1].

    ``dtype=None`` keeps a float tensor's own dtype and gives float32 for uint8 images.
    """
    if dtype is None:
        dtype = images.dtype if images.is_floating_point() else torch.float32
    return images.to(dtype) / 255


def to_uint8(images):
    """Turn float images in [0, 1] into uint8 values 0..255 (clipped, rounded)."""
    return (images * 255).round_().clamp_(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class GaussianNoise:
    """Additive white Gaussian noise with standard deviation ``sigma``.

    ``sigma`` is on the [0, 1] scale: 25/255 is the Noise2Noise paper's setting.
    """
    sigma: float = 25 / 255

    def __call__(self, clean, generator, clip=True):
        """``clean + sigma * n``, clipped to [0, 1] unless ``clip=False`` (the paper's code and
        the standard protocol keep the unclipped floats)."""
        noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
        noisy = noise.mul_(self.sigma).add_(clean)
        return noisy.clamp_(0, 1) if clip else noisy


@dataclass(frozen=True)
class PoissonNoise:
    """Photon (shot) noise: a pixel of intensity x counts Poisson(peak * x) photons.

    ``peak`` is the expected photon count of a white pixel. The noisy value is
    count / peak, so its mean is x and its variance x / peak: brighter pixels
    are noisier, and a smaller ``peak`` means more noise overall.
    """
    peak: float = 30.0

    def __call__(self, clean, generator, clip=True):
        counts = torch.poisson(clean * self.peak, generator=generator)
        noisy = counts.div_(self.peak)
        return noisy.clamp_(0, 1) if clip else noisy


def noise_from_spec(spec):
    """Build a noise model from text: ``"gaussian:25"`` (sigma in 0..255 units)
    or ``"poisson:30"`` (peak photon count)."""
    kind, _, value = spec.partition(":")
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if kind not in ("gaussian", "poisson") or not number > 0:
        raise ValueError(f"bad noise spec {spec!r}: expected 'gaussian:SIGMA' (SIGMA in 0..255, "
                         "e.g. 'gaussian:25') or 'poisson:PEAK' (e.g. 'poisson:30'), "
                         "with a positive number")
    return GaussianNoise(number / 255) if kind == "gaussian" else PoissonNoise(number)


def add_noise(clean, noise, generator, chunk_size=1024):
    """Return a noisy uint8 copy of the uint8 images ``clean``.

    Works through the images in chunks so that 50,000 crops never need
    several gigabytes of float32 memory at once.
    """
    noisy = torch.empty_like(clean)
    for start in range(0, len(clean), chunk_size):
        part = to_float(clean[start:start + chunk_size])
        noisy[start:start + chunk_size] = to_uint8(noise(part, generator))
    return noisy


def _noisy_pairs(clean, noise, generator, return_clean):
    """Two independent noisy copies of the same clean images (and the clean ones if asked)."""
    noisy_a = add_noise(clean, noise, generator)
    noisy_b = add_noise(clean, noise, generator)  # the generator has moved on: fresh noise
    return (noisy_a, noisy_b, clean) if return_clean else (noisy_a, noisy_b)


def _crop_many(photo, tops, lefts, size):
    """Cut crops of ``size``x``size`` at the given corners out of one (3, H, W) photo."""
    offsets = torch.arange(size)
    rows = (tops[:, None] + offsets)[:, :, None]   # (n, size, 1)
    cols = (lefts[:, None] + offsets)[:, None, :]  # (n, 1, size)
    return photo[:, rows, cols].permute(1, 0, 2, 3)  # (3, n, size, size) -> (n, 3, size, size)


def _flip_or_rotate(crops, which):
    """Apply one of the 8 symmetries of a square: ``which`` quarter turns, mirrored if >= 4."""
    crops = torch.rot90(crops, which % 4, dims=(2, 3))
    return crops.flip(3) if which >= 4 else crops


def _random_crops(num_crops, photos, crop_size, augment, generator):
    """Random square crops (uint8) from the named photos, drawn with ``generator``."""
    images = [_cached_photo(name) for name in photos]
    if crop_size > min(min(image.shape[1:]) for image in images):
        raise ValueError(f"crop_size={crop_size} is larger than one of the photos {photos}")
    # Each crop: a photo chosen uniformly, then a corner chosen uniformly inside it.
    which = torch.randint(len(images), (num_crops,), generator=generator)
    crops = torch.empty(num_crops, 3, crop_size, crop_size, dtype=torch.uint8)
    for index, image in enumerate(images):
        chosen = which == index
        count = int(chosen.sum())
        tops = torch.randint(image.shape[1] - crop_size + 1, (count,), generator=generator)
        lefts = torch.randint(image.shape[2] - crop_size + 1, (count,), generator=generator)
        crops[chosen] = _crop_many(image, tops, lefts, crop_size)
    if augment:
        symmetry = torch.randint(8, (num_crops,), generator=generator)
        for index in range(8):
            chosen = symmetry == index
            crops[chosen] = _flip_or_rotate(crops[chosen], index)
    return crops


def make_crops(num_crops, seed=0, crop_size=32, augment=False, photos=TRAIN_PHOTOS):
    """Clean random crops, uint8 (N, 3, crop_size, crop_size).

    The same seed and arguments give exactly the clean crops behind
    ``make_noise2noise_pairs``.
    """
    generator = torch.Generator().manual_seed(seed)
    return _random_crops(num_crops, photos, crop_size, augment, generator)


def _recolour(crops, generator):
    """Random colours: permute the three channels of each crop, and invert half the crops.

    Five photographs hold few of the colours a denoiser meets (chapter 7: a dark blue-green
    background is almost absent). Inverting (x -> 255 - x) turns bright regions into dark ones.
    With additive Gaussian noise clipped to [0, 1] both changes are exact symmetries of the noisy
    data: clip(1 - x + n) = 1 - clip(x - n), and -n is noise of the same law.
    """
    permutation = torch.randint(6, (len(crops),), generator=generator)
    inverted = torch.randint(2, (len(crops),), generator=generator).bool()
    orders = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
    for index, order in enumerate(orders):
        chosen = permutation == index
        crops[chosen] = crops[chosen][:, list(order)]
    crops[inverted] = 255 - crops[inverted]
    return crops


def make_noise2noise_pairs(num_pairs, seed=0, noise=GaussianNoise(), crop_size=32,
                           augment=False, photos=TRAIN_PHOTOS, return_clean=False,
                           recolour=False):
    """Training data: two independent noisy copies of the same random crops.

    Returns ``(noisy_a, noisy_b)``, uint8 (N, 3, crop_size, crop_size), like the
    course's ``train_data.pkl``; with ``return_clean=True`` also the clean crops
    (for a Noise2Clean comparison). ``augment`` adds random flips and 90° turns;
    ``recolour`` permutes colour channels and inverts brightness at random (Gaussian noise only).
    """
    if recolour and not isinstance(noise, GaussianNoise):
        raise ValueError("recolour inverts brightness, which changes the law of photon (Poisson) "
                         "noise; use it with Gaussian noise only")
    generator = torch.Generator().manual_seed(seed)
    clean = _random_crops(num_pairs, photos, crop_size, augment, generator)
    if recolour:
        clean = _recolour(clean, generator)
    return _noisy_pairs(clean, noise, generator, return_clean)


def make_validation_set(num_images=1000, seed=0, noise=GaussianNoise(), crop_size=32,
                        photos=VALIDATION_PHOTOS):
    """Validation data ``(noisy, clean)``, uint8 (N, 3, crop_size, crop_size),
    from photographs held out of training, like the course's ``val_data.pkl``.

    ``photos=VARIED_VALIDATION_PHOTOS`` gives the second, more varied held-out set."""
    generator = torch.Generator().manual_seed(seed)
    clean = _random_crops(num_images, photos, crop_size, False, generator)
    return add_noise(clean, noise, generator), clean


def load_course_data(path):
    """Read the course's ``train_data.pkl`` or ``val_data.pkl``.

    Both hold a tuple of two uint8 tensors of the same shape (N, 3, H, W):
    (noisy, noisy) for training, (noisy, clean) for validation. Raises a
    ValueError that says what was expected and what the file holds.
    """
    expected = "a tuple of two uint8 tensors of the same shape (N, 3, H, W)"
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise  # a missing file is already a clear error
    except Exception as error:  # a damaged or foreign file can fail in many different ways
        raise ValueError(f"{path}: expected {expected}, "
                         f"but the file could not be read ({error})") from None
    if not isinstance(data, (tuple, list)):
        raise ValueError(f"{path}: expected {expected}, found a {type(data).__name__}")
    if len(data) != 2:
        raise ValueError(f"{path}: expected {expected}, "
                         f"found a {type(data).__name__} of length {len(data)}")
    for name, tensor in zip(("first", "second"), data):
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{path}: expected {expected}, "
                             f"the {name} item is a {type(tensor).__name__}")
        if tensor.dtype != torch.uint8:  # uint8 also guarantees values 0..255
            raise ValueError(f"{path}: expected {expected}, "
                             f"the {name} tensor has dtype {tensor.dtype}")
        if tensor.ndim != 4 or tensor.shape[1] != 3:
            raise ValueError(f"{path}: expected {expected}, "
                             f"the {name} tensor has shape {tuple(tensor.shape)}")
    if data[0].shape != data[1].shape:
        raise ValueError(f"{path}: expected {expected}, found shapes "
                         f"{tuple(data[0].shape)} and {tuple(data[1].shape)}")
    return data[0], data[1]


def images_to_uint8_chw(images):
    """Turn uint8 images (N, H, W, 3) -- numpy or torch, as CIFAR-10 and image files
    store them -- into a uint8 tensor (N, 3, H, W), as PyTorch expects."""
    if not isinstance(images, torch.Tensor):
        images = torch.tensor(images)  # copies, so the caller's array is never shared
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"expected uint8 images of shape (N, H, W, 3), "
                         f"got {images.dtype} of shape {tuple(images.shape)}")
    return images.permute(0, 3, 1, 2).contiguous()


def noise2noise_pairs_from_images(images, num_pairs, seed=0, noise=GaussianNoise(),
                                  return_clean=False):
    """Noisy pairs from ``num_pairs`` distinct images drawn at random from
    uint8 clean images (N, 3, H, W); returns what ``make_noise2noise_pairs`` does."""
    if num_pairs > len(images):
        raise ValueError(f"asked for {num_pairs} pairs but there are only {len(images)} images")
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(images), generator=generator)[:num_pairs]
    return _noisy_pairs(images[chosen], noise, generator, return_clean)


def cifar10_noise2noise_pairs(root, num_pairs, seed=0, noise=GaussianNoise(), train=True,
                              download=True, return_clean=False):
    """Noisy pairs from CIFAR-10 (needs torchvision, e.g. in Colab; downloads ~170 MB)."""
    try:
        import torchvision  # imported here: only readers who use CIFAR-10 need it
    except ImportError:
        raise ValueError("CIFAR-10 is read with torchvision, which is not installed: "
                         "pip install torchvision") from None

    dataset = torchvision.datasets.CIFAR10(root, train=train, download=download)
    images = images_to_uint8_chw(dataset.data)  # dataset.data: numpy uint8 (N, 32, 32, 3)
    return noise2noise_pairs_from_images(images, num_pairs, seed, noise, return_clean)


# --- fresh pairs for every batch (large training sets, the Noise2Noise paper's practice) --------


def _pick_crops(images, count, crop_size, generator):
    """``count`` random crops (uint8) from a list of (3, H, W) images of any sizes: an image
    chosen uniformly, then a corner chosen uniformly inside it."""
    which = torch.randint(len(images), (count,), generator=generator).tolist()
    crops = torch.empty(count, 3, crop_size, crop_size, dtype=torch.uint8)
    for slot, index in enumerate(which):
        image = images[index]
        top = int(torch.randint(image.shape[1] - crop_size + 1, (), generator=generator))
        left = int(torch.randint(image.shape[2] - crop_size + 1, (), generator=generator))
        crops[slot] = image[:, top:top + crop_size, left:left + crop_size]
    return crops


def _symmetries(crops, generator):
    """Each crop turned and mirrored by one of the 8 symmetries of a square, drawn at random."""
    symmetry = torch.randint(8, (len(crops),), generator=generator)
    for index in range(8):
        chosen = symmetry == index
        crops[chosen] = _flip_or_rotate(crops[chosen], index)
    return crops


@dataclass(frozen=True, eq=False)
class FreshPairs:
    """Noise2Noise mini-batches drawn afresh for every step: random crops of clean photographs,
    each with two independent noise draws, so no crop and no noise is ever seen twice and no
    set of pairs has to fit in memory.

    ``batch(step, size)`` is a pure function of ``(seed, step)``: a resumed run draws exactly the
    batches it would have drawn. Inputs and targets are floats in [0, 1] *plus noise*,
    unclipped as in the Noise2Noise paper's code (clipping biases the target's mean near black
    and white: chapter 7); ``clip=True`` stores them like the course instead, clipped and
    rounded to 256 levels. ``clean_targets=True`` gives Noise2Clean pairs (noisy, clean).
    """
    images: tuple            # uint8 (3, H, W) tensors, each at least crop_size on both sides
    crop_size: int = 64
    noise: object = GaussianNoise()
    augment: bool = True
    clip: bool = False
    clean_targets: bool = False
    seed: int = 0

    def __post_init__(self):
        if not self.images:
            raise ValueError("FreshPairs: expected at least one image")
        small = [tuple(image.shape[1:]) for image in self.images
                 if min(image.shape[1:]) < self.crop_size]
        if small:
            raise ValueError(f"FreshPairs: crop_size={self.crop_size} is larger than "
                             f"{len(small)} of the images (e.g. {small[0][0]}x{small[0][1]})")

    def batch(self, step, size):
        """Mini-batch number ``step`` of ``size`` pairs: (inputs, targets), float32."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        crops = _pick_crops(self.images, size, self.crop_size, generator)
        if self.augment:
            crops = _symmetries(crops, generator)
        clean = to_float(crops)
        first = self.noise(clean, generator, clip=self.clip)
        second = clean if self.clean_targets else self.noise(clean, generator, clip=self.clip)
        if self.clip:  # the course's storage: 256 levels
            first, second = to_float(to_uint8(first)), to_float(to_uint8(second))
        return first, second
