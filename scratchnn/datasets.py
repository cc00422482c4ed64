"""The standard data sets of the denoising literature, fetched once by name, checked, cached.

* ``cbsd432``: 432 colour photographs (481x321 or 321x481) of the Berkeley Segmentation
  Dataset, the training set of colour DnCNN (FFDNet added ImageNet and Waterloo images to it);
  disjoint from CBSD68.
* ``cbsd68``: the 68 colour test photographs of the same dataset.
* ``kodak24``: the 24 Kodak photographs as the FFDNet paper tests on them (500x500 centres).

Each file comes from a public repository at a fixed commit (``standard_sets.json`` holds the
commit and the sha256 of every file), through ``pooch``, the downloader scikit-image uses; a
machine without internet installs from a copy of the files (``install_from``). Either way every
file's checksum is verified before it is used. Nothing here is ever run by the tests or in CI:
they use small images they make themselves.

    python -m scratchnn download kodak24                # fetch into the cache
    python -m scratchnn download cbsd432 --from DIR     # or copy from a local folder

The cache is ``$SCRATCHNN_DATA`` when that is set, else a ``scratchnn`` folder in the user's
cache (``~/.cache/scratchnn`` on Linux).
"""
import hashlib
import importlib.resources
import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

import torch

CACHE_VARIABLE = "SCRATCHNN_DATA"
URL = "https://raw.githubusercontent.com/{repository}/{commit}/{folder}/{name}"
SOURCES = {
    "cbsd432": "Berkeley Segmentation Dataset (Martin et al., ICCV 2001), colour training images "
               "as used by DnCNN; copy: github.com/Magauiya/Extended_SURE, Dataset/CBSD432",
    "cbsd68": "Berkeley Segmentation Dataset (Martin et al., ICCV 2001), 68 colour test images; "
              "copy: github.com/cszn/FFDNet, testsets/CBSD68",
    "kodak24": "Kodak Lossless True Color Image Suite, 500x500 centres as in the FFDNet paper; "
               "copy: github.com/cszn/FFDNet, testsets/Kodak24",
}


@lru_cache(maxsize=None)
def registry():
    """``{name: {"repository", "commit", "folder", "files": {file name: sha256}}}``."""
    text = (importlib.resources.files("scratchnn") / "standard_sets.json").read_text()
    return json.loads(text)


def check_name(name):
    if name not in registry():
        raise ValueError(f"unknown data set {name!r}; the standard sets are "
                         f"{', '.join(sorted(registry()))}")
    return registry()[name]


def cache_folder():
    """Where the standard sets live: ``$SCRATCHNN_DATA``, else the user's cache folder."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE]).expanduser()
    try:
        import pooch
        return Path(pooch.os_cache("scratchnn"))
    except ImportError:  # pooch is only needed to download; the default path is the same
        return Path.home() / ".cache" / "scratchnn"


def set_folder(name):
    return cache_folder() / name


def file_urls(name):
    """The pinned URL of every file of a set, by file name."""
    entry = check_name(name)
    return {file: URL.format(name=file, **entry) for file in entry["files"]}


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def missing_or_damaged(name):
    """The files of a set that are absent from the cache or whose checksum is wrong."""
    folder, files = set_folder(name), check_name(name)["files"]
    return [file for file, digest in files.items()
            if not (folder / file).is_file() or sha256(folder / file) != digest]


def download(name, progress=True):
    """Fetch every file of a standard set into the cache (pooch checks each sha256); files
    already there and intact are not fetched again. Returns the set's folder."""
    try:
        import pooch
    except ImportError:
        raise ValueError("downloading the standard sets needs pooch: pip install pooch") from None
    files, folder = check_name(name)["files"], set_folder(name)
    for file, url in file_urls(name).items():
        pooch.retrieve(url, known_hash=f"sha256:{files[file]}", fname=file, path=folder,
                       progressbar=False)
        if progress:
            print(f"  {name}/{file}", flush=True)
    return folder


def install_from(name, source):
    """Copy a standard set from a local folder (for machines without internet): every file is
    looked for by name in ``source`` (or its sub-folders) and checked against its sha256 before
    it is copied into the cache. Returns the set's folder."""
    source = Path(source).expanduser()
    if not source.is_dir():
        raise ValueError(f"--from {source}: no such folder")
    files, folder = check_name(name)["files"], set_folder(name)
    candidates = {}  # a file name may occur in several sub-folders: keep the right copy
    for path in sorted(source.rglob("*")):
        if path.name in files and path.is_file():
            candidates.setdefault(path.name, []).append(path)
    absent = sorted(set(files) - set(candidates))
    if absent:
        raise ValueError(f"{source} lacks {len(absent)} of the {len(files)} files of {name} "
                         f"(e.g. {absent[0]})")
    found = {file: next((path for path in paths if sha256(path) == files[file]), None)
             for file, paths in candidates.items()}
    wrong = [file for file, path in found.items() if path is None]
    if wrong:
        raise ValueError(f"{len(wrong)} files in {source} are not the {name} files that were "
                         f"pinned (sha256 differs, e.g. {candidates[wrong[0]][0]})")
    folder.mkdir(parents=True, exist_ok=True)
    for file, path in found.items():
        shutil.copyfile(path, folder / file)
    return folder


def check_installed(name):
    """Raise a one-line error that says the command to run when a set is not in the cache."""
    check_name(name)
    folder = set_folder(name)
    present = [file for file in check_name(name)["files"] if (folder / file).is_file()]
    if len(present) < len(check_name(name)["files"]):
        raise ValueError(f"the data set {name} is not installed in {folder}: run "
                         f"'python -m scratchnn download {name}' (or add '--from DIR' to copy "
                         f"it from a local folder)")
    return folder


def read_image_file(path):
    """An image file as a uint8 tensor (3, H, W), RGB."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def load_standard_set(name):
    """The images of an installed standard set: ``(file names, uint8 (3, H, W) tensors)``,
    in the registry's order (sorted file names)."""
    folder = check_installed(name)
    files = sorted(check_name(name)["files"])
    return files, [read_image_file(folder / file) for file in files]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def load_image_folder(folder):
    """Every image of a folder of your own photographs (sorted by name), as uint8 (3, H, W)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder of images")
    paths = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return [path.name for path in paths], [read_image_file(path) for path in paths]


# --- the standard protocol -----------------------------------------------------------------------


def protocol_noise(images, sigma, seed=0):
    """The standard protocol's noisy images: ``clean + sigma * n`` on the 0..255 scale, float64,
    **not clipped** and not rounded, with one generator seeded once and drawn image after image
    in order (so a set and a seed always give the same noisy images)."""
    generator = torch.Generator().manual_seed(seed)
    return [image.to(torch.float64) + sigma * torch.randn(image.shape, generator=generator,
                                                          dtype=torch.float64)
            for image in images]


def standard_noisy_set(name, sigma, seed=0):
    """``(noisy, clean)`` for a standard test set whose images all have one size (Kodak24):
    noisy as float32 values around 0..255 (unclipped), clean as uint8, stacked (N, 3, H, W)."""
    _, clean = load_standard_set(name)
    if len({tuple(image.shape) for image in clean}) > 1:
        raise ValueError(f"{name}: its images differ in size; measure it with "
                         f"benchmarks/standard_sets.py, one image at a time")
    noisy = protocol_noise(clean, sigma, seed)
    return torch.stack(noisy).to(torch.float32), torch.stack(clean)
