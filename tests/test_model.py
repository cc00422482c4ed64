"""The networks and the course API, called the way the course's test harness calls them."""
import math

import pytest
import torch

import scratchnn
from scratchnn import Model, build_network
from scratchnn.inference import apply_in_tiles, denoise, pad_to_multiple
from scratchnn.networks import ARCHITECTURES, network_from_state_dict


@pytest.fixture(autouse=True)
def seeded_and_one_thread():
    """Fixed weights; one thread, which is also fastest when other jobs share the CPU."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    return Model()


# --- the networks --------------------------------------------------------------------------------

def test_seed000_network_is_table_1_of_the_seed_report():
    network = build_network("seed000")
    shapes = {name: tuple(tensor.shape) for name, tensor in network.state_dict().items()}
    assert shapes == {"0.weight": (100, 3, 2, 2), "0.bias": (100,),
                      "2.weight": (100, 100, 2, 2), "2.bias": (100,),
                      "4.conv.weight": (100, 100, 3, 3), "4.conv.bias": (100,),
                      "6.conv.weight": (3, 100, 3, 3), "6.conv.bias": (3,)}
    assert isinstance(network, scratchnn.Sequential) and isinstance(network[-1], scratchnn.Sigmoid)
    assert all(network[i].upsample.scale_factor == (2, 2) for i in (4, 6))


def test_seed000_upsampling_blocks_compute_table_1_layer_by_layer():
    """Table 1 lists nearest x2 and the 3x3 convolution as separate layers: same function, same
    gradients."""
    torch.manual_seed(0)
    blocks = build_network("seed000", channels=6).to(dtype=torch.float64)
    layers = scratchnn.Sequential(
        blocks[0], blocks[1], blocks[2], blocks[3],
        scratchnn.NearestUpsampling(2), blocks[4].conv, scratchnn.ReLU(),
        scratchnn.NearestUpsampling(2), blocks[6].conv, scratchnn.Sigmoid())
    x = torch.rand(2, 3, 12, 8, dtype=torch.float64)
    out_blocks = blocks.forward(x)
    grad = torch.randn_like(out_blocks)
    blocks.zero_grad()
    grad_in_blocks = blocks.backward(grad)
    weight_grads_blocks = [g.clone() for _, g in blocks.param()]
    out_layers = layers.forward(x)
    blocks.zero_grad()
    grad_in_layers = layers.backward(grad)
    assert (out_blocks - out_layers).abs().max() < 1e-12
    assert (grad_in_blocks - grad_in_layers).abs().max() < 1e-12
    for fused, plain in zip(weight_grads_blocks, [g for _, g in blocks.param()]):
        assert (fused - plain).abs().max() < 1e-12


def test_seed003_network_uses_upsampling_blocks():
    network = build_network("seed003")
    assert isinstance(network[4], scratchnn.Upsampling) and network[4].conv.in_channels == 32
    assert "6.conv.weight" in network.state_dict()


@pytest.mark.parametrize("kind", sorted(ARCHITECTURES))
def test_every_network_keeps_the_image_size_and_the_range(kind):
    """The seed networks end with a Sigmoid; the U-Net's output is not squashed (it predicts a
    correction of its input), so ``predict`` clips it to [0, 255]."""
    network = build_network(kind, channels=8)
    out = network.forward(torch.rand(2, 3, 32, 48))
    assert out.shape == (2, 3, 32, 48)
    if kind != "unet":
        assert 0 <= out.min() and out.max() <= 1
    predicted = denoise(network, torch.rand(2, 3, 32, 48) * 255)
    assert 0 <= predicted.min() and predicted.max() <= 255


def test_unknown_network_names_the_known_ones():
    with pytest.raises(ValueError, match="seed000"):
        build_network("unet2")


@pytest.mark.parametrize("kind", sorted(ARCHITECTURES))
def test_network_from_state_dict_finds_the_variant_and_width(kind):
    saved = build_network(kind, channels=12).state_dict()
    rebuilt = network_from_state_dict(saved)
    assert all(torch.equal(rebuilt.state_dict()[name], tensor) for name, tensor in saved.items())


@pytest.mark.parametrize("kind", sorted(ARCHITECTURES))
def test_tiles_give_the_whole_image_result(kind):
    """Exact when the margin covers the receptive field (31 pixels for the U-Net, measured by
    perturbing one pixel) and windows stay on the grid of the network's largest stride (8)."""
    network = build_network(kind, channels=6).to(dtype=torch.float64)
    image = torch.rand(1, 3, 104, 72, dtype=torch.float64)
    whole = network.forward(image)
    tiled = apply_in_tiles(network, image, tile=32, margin=32)
    assert (whole - tiled).abs().max() < 1e-12


def test_padding_reaches_a_multiple_of_eight_and_remembers_the_size():
    """Eight: the U-Net halves the image three times (the other networks need four)."""
    padded, size = pad_to_multiple(torch.rand(1, 3, 37, 50))
    assert padded.shape == (1, 3, 40, 56) and size == (37, 50)


# --- the course API ------------------------------------------------------------------------------

def test_untrained_predict_on_a_large_image(model):
    out = model.predict(torch.rand(1, 3, 512, 512) * 255)
    assert out.shape == (1, 3, 512, 512) and out.dtype.is_floating_point
    assert 0 <= out.min() and out.max() <= 255


@pytest.mark.parametrize("shape", [(1, 3, 37, 50), (2, 3, 5, 3), (1, 3, 1, 1), (3, 3, 32, 32)])
def test_predict_any_size_and_uint8(model, shape):
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    out = model.predict(images)
    assert (out.shape == shape and out.dtype == torch.float32
            and 0 <= out.min() and out.max() <= 255)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(3, 32, 32), "4-D"),
    (torch.rand(1, 1, 32, 32), "3"),
    (torch.rand(1, 3, 8, 8) * 300, r"\[0, 255\]"),
    (torch.full((1, 3, 8, 8), -1.0), r"\[0, 255\]"),
    (torch.full((1, 3, 8, 8), float("nan")), r"\[0, 255\]"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.int64), "dtype"),
    ([[1, 2]], "torch.Tensor"),
])
def test_predict_rejects_bad_input_clearly(model, bad, message):
    with pytest.raises(ValueError, match=message):
        model.predict(bad)


def test_load_pretrained_model_denoises_better_than_doing_nothing():
    from scratchnn.data import make_validation_set
    from scratchnn.metrics import psnr

    model = Model()
    model.load_pretrained_model()
    noisy, clean = make_validation_set(64, seed=1)
    assert psnr(model.predict(noisy) / 255, clean / 255) > psnr(noisy / 255, clean / 255) + 1.0


def test_pretrained_weights_load_on_the_cpu_with_weights_only():
    from scratchnn.shipped import load_pretrained_state_dict

    state = load_pretrained_state_dict("seed000")
    assert all(tensor.device.type == "cpu" for tensor in state.values())


def test_one_epoch_of_train_on_uint8_changes_the_network():
    from scratchnn.data import make_noise2noise_pairs

    model = Model()
    noisy_a, noisy_b = make_noise2noise_pairs(48, seed=0)
    before = model.predict(noisy_a[:4])
    history = model.train(noisy_a, noisy_b, 1)
    assert history["epoch"] == [0, 1] and math.isfinite(history["train_loss"][1])
    assert not torch.equal(before, model.predict(noisy_a[:4]))


def test_train_rejects_mismatched_pairs(model):
    with pytest.raises(ValueError, match="same shape"):
        model.train(torch.zeros(4, 3, 32, 32, dtype=torch.uint8),   # the course's crop size,
                    torch.zeros(5, 3, 32, 32, dtype=torch.uint8), 1)  # which every network takes


def test_denoise_returns_on_the_input_device():
    network = build_network("seed000", channels=4)
    out = denoise(network, torch.zeros(1, 3, 9, 9, dtype=torch.uint8))
    assert out.device.type == "cpu" and out.shape == (1, 3, 9, 9)


def test_model_names_a_network_and_defaults_to_the_best_shipped_one():
    from scratchnn.shipped import best_shipped_network, shipped_networks

    cards = shipped_networks()
    assert "seed000" in cards
    assert Model().network_kind == best_shipped_network()
    assert Model(network="seed003").network_kind == "seed003"
    with pytest.raises(ValueError, match="unknown network 'unet2'"):
        Model(network="unet2")


def test_the_standard_benchmark_ranks_the_shipped_networks_once_every_card_has_it():
    from scratchnn.shipped import best_shipped_network

    def card(validation, kodak=None):
        standard = {"standard_sets_psnr_db": {"kodak24": {"25": kodak}}} if kodak else {}
        return {"validation_psnr_db": validation, **standard}

    # The old U-Net leads on the bundled photographs, the new one on Kodak24.
    assert best_shipped_network({"old": card(31.8, 31.1), "new": card(31.6, 31.7)}) == "new"
    # Until every card is measured on the benchmark, the validation set decides.
    assert best_shipped_network({"old": card(31.8), "new": card(31.6, 31.7)}) == "old"


def test_a_network_without_shipped_weights_says_so():
    from scratchnn.shipped import shipped_networks

    if "seed003" in shipped_networks():
        pytest.skip("seed003 weights ship now")
    with pytest.raises(ValueError, match="no pretrained weights ship for 'seed003'"):
        Model(network="seed003").load_pretrained_model()


def test_every_shipped_card_describes_its_weights():
    from scratchnn.shipped import load_pretrained_state_dict, shipped_networks

    for name, card in shipped_networks().items():   # a shipped name need not be an architecture's
        described = card["network"]
        network = build_network(described["kind"], described["channels"],
                                **described.get("options", {}))
        network.load_state_dict(load_pretrained_state_dict(name))   # the card says what it is
        assert described["kind"] in ARCHITECTURES
        assert {"commands", "training", "data", "machine", "validation_psnr_db",
                "noisy_input_psnr_db"} <= set(card)
        pairs = card["data"]["num_pairs"]   # a fixed set of pairs, or fresh ones every step
        assert pairs == "fresh" if "FreshPairs" in card["data"]["source"] else pairs >= 1


def test_the_default_network_scores_at_least_cbm3d_on_the_stored_benchmark():
    """Issue 19's bar: Model()'s default, measured by benchmarks/standard_sets.py (the rows in
    results/standard_sets.json, which its card must quote exactly), is at least the published
    CBM3D on CBSD68 and Kodak24 at sigma 25."""
    import json
    from pathlib import Path

    from scratchnn.shipped import best_shipped_network, shipped_networks

    stored = json.loads((Path(__file__).resolve().parents[1] / "results"
                         / "standard_sets.json").read_text())
    default = best_shipped_network()
    card = shipped_networks()[default]["standard_sets_psnr_db"]
    for set_name in ("cbsd68", "kodak24"):
        row = next(row for row in stored["rows"] if (row["method"], row["set"], row["sigma"])
                   == (default, set_name, 25))
        assert card[set_name]["25"] == round(row["psnr_db"], 3)
        assert row["psnr_db"] >= stored["published"]["psnr_db"][set_name]["CBM3D"]["25"]
