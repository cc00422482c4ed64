"""Tests for scratchnn.data: photos, noise models, noisy pairs, course data, CIFAR conversion."""
import numpy as np
import pytest
import torch

from scratchnn import data


@pytest.fixture(scope="module")
def pairs_with_clean():
    return data.make_noise2noise_pairs(2000, seed=0, return_clean=True)


# --- photographs -------------------------------------------------------------

def test_train_and_validation_photos_are_disjoint():
    assert set(data.TRAIN_PHOTOS).isdisjoint(data.VALIDATION_PHOTOS)
    assert len(data.TRAIN_PHOTOS) >= 3 and len(data.VALIDATION_PHOTOS) >= 1


@pytest.mark.parametrize("name", data.TRAIN_PHOTOS + data.VALIDATION_PHOTOS)
def test_every_photo_loads_offline_as_uint8_chw(name):
    photo = data.load_photo(name)
    assert photo.dtype == torch.uint8 and photo.ndim == 3 and photo.shape[0] == 3
    assert min(photo.shape[1:]) >= 256
    assert photo.float().std() > 20  # a real picture, not a blank image


def test_load_photo_returns_a_copy_and_rejects_unknown_names():
    photo = data.load_photo("astronaut")
    photo.zero_()
    assert data.load_photo("astronaut").any()
    with pytest.raises(ValueError, match="unknown photo"):
        data.load_photo("hubble_deep_field")


# --- conversions and noise models ---------------------------------------------

def test_to_float_and_to_uint8_round_trip():
    images = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(2, 3, 16, 16)
    as_float = data.to_float(images)
    assert as_float.is_floating_point() and as_float.min() == 0 and as_float.max() == 1
    assert torch.equal(data.to_uint8(as_float), images)
    assert torch.equal(data.to_float(images.float()), as_float)  # floats 0..255 work too
    assert data.to_uint8(torch.tensor([-0.5, 1.5])).tolist() == [0, 255]  # clipped


def test_gaussian_noise_has_the_requested_std_and_zero_mean():
    generator = torch.Generator().manual_seed(0)
    noisy = data.GaussianNoise(sigma=0.1)(torch.full((200_000,), 0.5), generator)
    assert abs(noisy.mean().item() - 0.5) < 0.002
    assert abs(noisy.std().item() - 0.1) < 0.002


def test_poisson_noise_variance_grows_with_intensity():
    generator = torch.Generator().manual_seed(0)
    noise = data.PoissonNoise(peak=30)
    dark = noise(torch.full((200_000,), 0.1), generator)
    bright = noise(torch.full((200_000,), 0.4), generator)
    assert abs(dark.mean().item() - 0.1) < 0.003 and abs(bright.mean().item() - 0.4) < 0.003
    assert dark.var().item() == pytest.approx(0.1 / 30, rel=0.05)   # variance = x / peak
    assert bright.var().item() == pytest.approx(0.4 / 30, rel=0.05)


def test_noise_from_spec():
    assert data.noise_from_spec("gaussian:25") == data.GaussianNoise(25 / 255)
    assert data.noise_from_spec("gaussian:12.5") == data.GaussianNoise(12.5 / 255)
    assert data.noise_from_spec("poisson:30") == data.PoissonNoise(30.0)
    for bad in ["gaussian", "gaussian:", "gaussian:abc", "gaussian:-5", "gaussian:0",
                "speckle:3", ""]:
        with pytest.raises(ValueError, match="gaussian:SIGMA"):
            data.noise_from_spec(bad)


# --- Noise2Noise pairs and validation set --------------------------------------

def test_pairs_have_the_course_format(pairs_with_clean):
    for images in pairs_with_clean:
        assert images.shape == (2000, 3, 32, 32) and images.dtype == torch.uint8
    noisy_a, noisy_b = data.make_noise2noise_pairs(10, crop_size=48)
    assert noisy_a.shape == noisy_b.shape == (10, 3, 48, 48)


def test_pairs_are_deterministic_for_a_seed_and_differ_between_seeds():
    first = data.make_noise2noise_pairs(100, seed=7)
    again = data.make_noise2noise_pairs(100, seed=7)
    other = data.make_noise2noise_pairs(100, seed=8)
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_make_crops_gives_the_clean_crops_behind_the_pairs(pairs_with_clean):
    assert torch.equal(data.make_crops(2000, seed=0), pairs_with_clean[2])


def test_the_two_noisy_copies_have_independent_noise(pairs_with_clean):
    noisy_a, noisy_b, clean = (x.double() for x in pairs_with_clean)
    unclipped = (clean > 80) & (clean < 175)  # more than 3 sigma away from 0 and 255
    noise_a, noise_b = (noisy_a - clean)[unclipped], (noisy_b - clean)[unclipped]
    assert unclipped.sum() > 1_000_000
    assert abs(torch.corrcoef(torch.stack([noise_a, noise_b]))[0, 1].item()) < 0.005
    assert noise_a.std().item() == pytest.approx(25, rel=0.02)
    assert noise_b.std().item() == pytest.approx(25, rel=0.02)
    assert abs(noise_a.mean().item()) < 0.1


def test_the_mean_of_the_two_copies_is_closer_to_the_clean_crop(pairs_with_clean):
    noisy_a, noisy_b, clean = (x.double() for x in pairs_with_clean)
    error_one = ((noisy_a - clean) ** 2).mean()
    error_mean = (((noisy_a + noisy_b) / 2 - clean) ** 2).mean()
    assert error_mean < 0.6 * error_one  # averaging two independent copies halves the variance


def test_augmentation_only_flips_and_rotates_the_crops():
    plain = data.make_crops(64, seed=3)
    augmented = data.make_crops(64, seed=3, augment=True)
    for original, changed in zip(plain, augmented):
        symmetries = [data._flip_or_rotate(original[None], k)[0] for k in range(8)]
        assert any(torch.equal(changed, s) for s in symmetries)
    assert not torch.equal(plain, augmented)


def test_crop_larger_than_a_photo_is_rejected():
    with pytest.raises(ValueError, match="crop_size"):
        data.make_crops(1, crop_size=5000)


def test_a_crop_as_tall_as_the_photo_starts_at_the_top_row():
    photo = data.load_photo("chelsea")  # 300 rows
    for crop in data.make_crops(5, seed=1, crop_size=300, photos=("chelsea",)):
        assert any(torch.equal(crop, photo[:, :, left:left + 300])
                   for left in range(photo.shape[2] - 299))


def test_validation_set_format_and_determinism():
    noisy, clean = data.make_validation_set(200)
    assert noisy.shape == clean.shape == (200, 3, 32, 32)
    assert noisy.dtype == clean.dtype == torch.uint8
    again_noisy, again_clean = data.make_validation_set(200)
    assert torch.equal(noisy, again_noisy) and torch.equal(clean, again_clean)
    assert not torch.equal(noisy, clean)


def test_poisson_pairs_can_be_made():
    noisy_a, noisy_b = data.make_noise2noise_pairs(20, noise=data.noise_from_spec("poisson:30"))
    assert noisy_a.dtype == torch.uint8 and not torch.equal(noisy_a, noisy_b)


# --- course data ---------------------------------------------------------------

def _uint8_images(n=4, channels=3, size=8):
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8)


def test_load_course_data_reads_a_valid_file(tmp_path):
    noisy, clean = _uint8_images(), _uint8_images()
    torch.save((noisy, clean), tmp_path / "val_data.pkl")
    loaded_noisy, loaded_clean = data.load_course_data(tmp_path / "val_data.pkl")
    assert torch.equal(loaded_noisy, noisy) and torch.equal(loaded_clean, clean)


@pytest.mark.parametrize("content, message", [
    (_uint8_images(), "found a Tensor"),
    ((_uint8_images(),) * 3, "of length 3"),
    ({"noisy": _uint8_images()}, "found a dict"),
    ((_uint8_images(), "not a tensor"), "second item is a str"),
    ((_uint8_images().float(), _uint8_images()), "dtype torch.float32"),
    ((_uint8_images()[0], _uint8_images()[0]), r"shape \(3, 8, 8\)"),
    ((_uint8_images(channels=1), _uint8_images(channels=1)), r"shape \(4, 1, 8, 8\)"),
    ((_uint8_images(n=4), _uint8_images(n=5)), r"found shapes \(4, 3, 8, 8\) and \(5, 3, 8, 8\)"),
])
def test_load_course_data_says_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.pkl"
    torch.save(content, path)
    with pytest.raises(ValueError, match=message) as error:
        data.load_course_data(path)
    assert "bad.pkl" in str(error.value) and "two uint8 tensors" in str(error.value)


def test_load_course_data_rejects_a_file_that_is_not_a_torch_save(tmp_path):
    path = tmp_path / "garbage.pkl"
    path.write_bytes(b"this is not a pickle")
    with pytest.raises(ValueError, match="could not be read"):
        data.load_course_data(path)


# --- CIFAR-10 style images -------------------------------------------------------

def test_images_to_uint8_chw_converts_hwc_arrays():
    images = np.random.default_rng(0).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    converted = data.images_to_uint8_chw(images)
    assert converted.shape == (6, 3, 32, 32) and converted.dtype == torch.uint8
    assert converted[2, 1, 5, 7] == images[2, 5, 7, 1]
    assert torch.equal(data.images_to_uint8_chw(torch.from_numpy(images)), converted)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        data.images_to_uint8_chw(images.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match="float"):
        data.images_to_uint8_chw(images.astype(np.float32))


def test_noise2noise_pairs_from_images():
    images = data.images_to_uint8_chw(
        np.random.default_rng(1).integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8))
    noisy_a, noisy_b, clean = data.noise2noise_pairs_from_images(images, 6, seed=2,
                                                                 return_clean=True)
    assert noisy_a.shape == noisy_b.shape == clean.shape == (6, 3, 32, 32)
    assert not torch.equal(noisy_a, noisy_b)
    chosen = [next(i for i in range(10) if torch.equal(images[i], c)) for c in clean]
    assert len(set(chosen)) == 6  # distinct images
    again = data.noise2noise_pairs_from_images(images, 6, seed=2)
    assert torch.equal(again[0], noisy_a) and torch.equal(again[1], noisy_b)
    with pytest.raises(ValueError, match="only 10 images"):
        data.noise2noise_pairs_from_images(images, 11)



def test_the_varied_validation_set_is_held_out_and_has_grey_and_colour_images():
    assert not set(data.VARIED_VALIDATION_PHOTOS) & set(data.TRAIN_PHOTOS + data.VALIDATION_PHOTOS)
    noisy, clean = data.make_validation_set(64, photos=data.VARIED_VALIDATION_PHOTOS)
    assert noisy.shape == clean.shape == (64, 3, 32, 32) and noisy.dtype == torch.uint8
    grey = (clean[:, 0] == clean[:, 1]).all((1, 2)) & (clean[:, 1] == clean[:, 2]).all((1, 2))
    assert 0 < grey.sum() < 64  # grey photographs and textures, and the colour tissue section
    assert not (noisy[:, 0] == noisy[:, 1]).all()  # the noise is drawn in each channel


def test_recolour_permutes_channels_and_inverts_brightness_of_the_clean_crops():
    plain = data.make_noise2noise_pairs(64, seed=3, augment=True, return_clean=True)[2]
    recoloured = data.make_noise2noise_pairs(64, seed=3, augment=True, return_clean=True,
                                             recolour=True)[2]
    orders = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    kinds = set()
    for before, after in zip(plain, recoloured):
        matches = [(order, inverted) for order in orders for inverted in (False, True)
                   if torch.equal(after, 255 - before[list(order)] if inverted
                                  else before[list(order)])]
        assert matches, "every recoloured crop is a channel permutation, maybe inverted"
        kinds.update(matches)
    assert any(inverted for _, inverted in kinds) and any(not inverted for _, inverted in kinds)
    assert len({order for order, _ in kinds}) > 1


def test_recolour_refuses_poisson_noise():
    with pytest.raises(ValueError, match="Gaussian noise only"):
        data.make_noise2noise_pairs(8, noise=data.PoissonNoise(30), recolour=True)
