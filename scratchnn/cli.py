"""The command line: ``python -m scratchnn train ...`` and ``python -m scratchnn denoise IN OUT``.

``train`` builds the data and the network from its options and hands them to
``scratchnn.train.train``; ``denoise`` runs a trained network on an image file of any size.
Run ``python -m scratchnn train --help`` for every option.
"""
import argparse
import sys
import time

import torch

from . import data, model
from .train import TrainingDiverged, resolve_device, train

# The validation set is drawn with a fixed seed, so runs with different --seed values are
# measured on the same images.
VALIDATION_SEED = 0


# --- data ----------------------------------------------------------------------------------------


def load_training_data(args):
    """(train_input, train_target, val_noisy, val_clean), uint8 (N, 3, H, W), from the options."""
    noise = data.noise_from_spec(args.noise)
    if args.data == "default":
        pairs = data.make_noise2noise_pairs(args.num_pairs or 50_000, seed=args.seed, noise=noise,
                                            return_clean=args.clean_targets)
        val_noisy, val_clean = data.make_validation_set(args.num_val or 1000, seed=VALIDATION_SEED, noise=noise)
    elif args.data == "cifar10":
        pairs = data.cifar10_noise2noise_pairs(args.cifar_root, args.num_pairs or 50_000, seed=args.seed,
                                               noise=noise, return_clean=args.clean_targets)
        val_noisy, _, val_clean = data.cifar10_noise2noise_pairs(
            args.cifar_root, args.num_val or 1000, seed=VALIDATION_SEED, noise=noise, train=False,
            return_clean=True)
    else:
        return load_course_data(args)
    train_input = pairs[0]
    train_target = pairs[2] if args.clean_targets else pairs[1]
    return train_input, train_target, val_noisy, val_clean


def load_course_data(args):
    """The course's pickles; the noise is already in them, so ``--noise`` does not apply."""
    if not args.train_file or not args.val_file:
        raise ValueError("--data course needs --train-file train_data.pkl and --val-file val_data.pkl")
    if args.clean_targets:
        raise ValueError("--clean-targets is impossible with --data course: its training set has no clean images")
    train_input, train_target = data.load_course_data(args.train_file)
    val_noisy, val_clean = data.load_course_data(args.val_file)
    num_pairs, num_val = args.num_pairs or len(train_input), args.num_val or len(val_noisy)
    return train_input[:num_pairs], train_target[:num_pairs], val_noisy[:num_val], val_clean[:num_val]


def build_for_framework(kind, channels, framework):
    """The network to train: from scratch, or its ``torch.nn`` twin (for comparison)."""
    if framework == "torch":
        from .reference import build_reference
        return build_reference(kind, channels)
    return model.build_network(kind, channels)


# --- train ---------------------------------------------------------------------------------------


def run_config(args):
    """What defines the run, stored in the checkpoint: a resume must not change any of it."""
    return {"network": args.network, "channels": args.channels or model.architecture(args.network).default_channels,
            "data": args.data, "noise": None if args.data == "course" else args.noise,
            "train_file": args.train_file, "val_file": args.val_file, "num_val": args.num_val,
            "clean_targets": args.clean_targets}


def train_command(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    train_input, train_target, val_noisy, val_clean = load_training_data(args)
    torch.manual_seed(args.seed)  # the network's initial weights
    network = build_for_framework(args.network, args.channels, args.framework)
    print(f"training {args.framework} {args.network} on {len(train_input)} {args.data} pairs "
          f"({'clean' if args.clean_targets else 'noisy'} targets), validating on {len(val_noisy)} images, "
          f"device {device}; files in {args.out}", flush=True)
    started = time.perf_counter()
    history = train(network, train_input, train_target, args.epochs, val_input=val_noisy, val_target=val_clean,
                    optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, batch_size=args.batch_size,
                    device=device, seed=args.seed, out_dir=args.out, resume=args.resume,
                    label=f"{args.framework} {args.network}", config=run_config(args))
    print(f"epoch {history['epoch'][-1]}: validation PSNR {history['val_psnr'][-1]:.2f} dB "
          f"(noisy input {history['baseline_psnr']:.2f} dB); {time.perf_counter() - started:.0f} s in this run",
          flush=True)
    return 0


# --- denoise -------------------------------------------------------------------------------------


def read_image(path):
    """Read an image file as a (1, 3, H, W) float tensor with values 0..255, plus what to restore.

    Grayscale images are copied into three channels (and written back as grayscale); an alpha
    channel is set aside and written back unchanged; 16-bit images are scaled to 0..255.
    """
    import numpy as np
    import skimage.io

    array = skimage.io.imread(path)
    if array.dtype == np.uint8:
        values = torch.from_numpy(array.astype(np.float32))
    elif array.dtype == np.uint16:
        values = torch.from_numpy(array.astype(np.float32) / 257)
    elif np.issubdtype(array.dtype, np.floating) and 0 <= array.min() and array.max() <= 1:
        values = torch.from_numpy(array.astype(np.float32) * 255)
    else:
        raise ValueError(f"{path}: expected 8- or 16-bit pixels (or floats in [0, 1]), got {array.dtype}")
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim != 3 or values.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"{path}: expected a grayscale, RGB or RGBA image, got an array of shape {array.shape}")
    colour_channels = 1 if values.shape[2] in (1, 2) else 3
    colours, alpha = values[:, :, :colour_channels], values[:, :, colour_channels:]
    rgb = colours.expand(-1, -1, 3) if colour_channels == 1 else colours
    return rgb.permute(2, 0, 1)[None].contiguous(), colour_channels, alpha


def write_image(path, rgb, colour_channels, alpha):
    """Write a (1, 3, H, W) image with values 0..255 as 8 bits, grayscale and alpha restored."""
    import skimage.io

    image = rgb[0].permute(1, 2, 0)
    if colour_channels == 1:
        image = image.mean(dim=2, keepdim=True)
    image = torch.cat([image, alpha], dim=2).round().clamp(0, 255).to(torch.uint8).numpy()
    skimage.io.imsave(path, image[:, :, 0] if image.shape[2] == 1 else image, check_contrast=False)


def load_weights(path):
    """A from-scratch network from ``--weights``: a bare state_dict (``network.pth``,
    ``bestmodel.pth``) or a training checkpoint (``checkpoint.pt``); default: the shipped model."""
    if path is None:
        return model.network_from_state_dict(model.load_pretrained_state_dict())
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if "network" in saved and isinstance(saved["network"], dict):
        saved = saved["network"]
    return model.network_from_state_dict(saved)


def denoise_command(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    network = load_weights(args.weights).to(device=resolve_device(args.device))
    image, colour_channels, alpha = read_image(args.input)
    started = time.perf_counter()
    denoised = model.denoise(network, image)
    write_image(args.output, denoised, colour_channels, alpha)
    height, width = image.shape[2:]
    print(f"denoised {args.input} ({width}x{height}) in {time.perf_counter() - started:.1f} s -> {args.output}")
    return 0


# --- argument parsing ----------------------------------------------------------------------------


def positive_int(text):
    """An argparse type: a whole number >= 1, with a clear message otherwise."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def add_train_arguments(parser):
    source = parser.add_argument_group("data")
    source.add_argument("--data", choices=["default", "course", "cifar10"], default="default",
                        help="default: crops of photographs shipped with scikit-image/scikit-learn (offline); "
                             "course: the course's pickles (--train-file, --val-file); "
                             "cifar10: CIFAR-10 via torchvision (downloads ~170 MB). Default: %(default)s")
    source.add_argument("--train-file", help="course training data: train_data.pkl (two noisy uint8 tensors)")
    source.add_argument("--val-file", help="course validation data: val_data.pkl (noisy, clean)")
    source.add_argument("--cifar-root", default="data", help="where CIFAR-10 is downloaded. Default: %(default)s")
    source.add_argument("--noise", default="gaussian:25",
                        help="noise model: gaussian:SIGMA (SIGMA in 0..255) or poisson:PEAK; not used with "
                             "--data course, whose images are already noisy. Default: %(default)s")
    source.add_argument("--num-pairs", type=positive_int, default=None,
                        help="number of training pairs. Default: 50000 (all of them for --data course)")
    source.add_argument("--num-val", type=positive_int, default=None,
                        help="number of validation images. Default: 1000 (all of them for --data course)")
    source.add_argument("--clean-targets", action="store_true",
                        help="train on (noisy, clean) pairs instead of (noisy, noisy): Noise2Clean, "
                             "the upper bound Noise2Noise is compared with")
    net = parser.add_argument_group("network")
    net.add_argument("--network", choices=sorted(model.ARCHITECTURES), default="seed000",
                     help="; ".join(f"{name}: {variant.description}" for name, variant in model.ARCHITECTURES.items())
                     + ". Default: %(default)s")
    net.add_argument("--channels", type=positive_int, default=None,
                     help="hidden channels. Default: the network's own (seed000: 100, seed003: 32)")
    net.add_argument("--framework", choices=["scratchnn", "torch"], default="scratchnn",
                     help="scratchnn: the from-scratch framework; torch: the same network in torch.nn with "
                          "autograd (scratchnn.reference), to compare. Default: %(default)s")
    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=positive_int, default=20,
                     help="total number of epochs of the run. Default: %(default)s")
    fit.add_argument("--batch-size", type=positive_int, default=model.DEFAULT_BATCH_SIZE,
                     help="pairs per mini-batch. Default: %(default)s")
    fit.add_argument("--optimizer", choices=["sgd", "adam"], default=model.DEFAULT_OPTIMIZER,
                     help="Default: %(default)s")
    fit.add_argument("--lr", type=float, default=None, help="learning rate. Default: 0.1 for sgd, 0.001 for adam")
    fit.add_argument("--momentum", type=float, default=0.0, help="SGD momentum. Default: %(default)s")
    fit.add_argument("--seed", type=int, default=0,
                     help="seeds the training data, the initial weights and the shuffling. Default: %(default)s")
    run = parser.add_argument_group("run")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                     help="auto: the GPU if PyTorch sees one, else the CPU. Default: %(default)s")
    run.add_argument("--threads", type=positive_int, default=None,
                     help="CPU threads for PyTorch. Default: PyTorch's choice")
    run.add_argument("--out", default="runs/n2n",
                     help="folder for checkpoint.pt, history.json, psnr.png and network.pth. Default: %(default)s")
    run.add_argument("--resume", action="store_true",
                     help="continue from the checkpoint in --out (same settings; --epochs may be larger)")


def make_parser():
    parser = argparse.ArgumentParser(prog="python -m scratchnn",
                                     description="Noise2Noise from scratch: train a denoiser, or denoise an image.")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train a denoising network",
                                       description="Train a denoiser and write checkpoints, history.json and "
                                                   "a PSNR plot to --out.")
    add_train_arguments(train_parser)
    train_parser.set_defaults(run=train_command)
    denoise_parser = commands.add_parser("denoise", help="denoise an image file of any size",
                                         description="Denoise an image (PNG, JPEG, ...; grayscale, RGB or RGBA) "
                                                     "of any size with a trained network.")
    denoise_parser.add_argument("input", help="the noisy image")
    denoise_parser.add_argument("output", help="where to write the denoised image (8 bits per channel)")
    denoise_parser.add_argument("--weights", default=None,
                                help="network.pth, bestmodel.pth or a checkpoint.pt. Default: the model "
                                     "shipped with the package (scratchnn/bestmodel.pth)")
    denoise_parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                                help="Default: %(default)s")
    denoise_parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads for PyTorch")
    denoise_parser.set_defaults(run=denoise_command)
    return parser


def main(argv=None):
    """Entry point of ``python -m scratchnn`` and of the ``scratchnn`` console script."""
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
