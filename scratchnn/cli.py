"""The command line: ``python -m scratchnn train ...`` and ``python -m scratchnn denoise IN OUT``
(or ``denoise IN... --out-dir DIR``).

``train`` builds the data and the network from its options and hands them to
``scratchnn.train.train``; ``denoise`` runs a trained network on image files of any size.
Every default comes from ``scratchnn.settings``. Run ``python -m scratchnn train --help`` for
every option. Everything that can be checked without the data or the pixels is checked before
any work. A user mistake ends with one ``error:`` line and exit code 2, a failure along the way
(divergence, a full disk) with one line and exit code 1, never a traceback (see ``main``).

``train`` runs unchanged under ``torchrun`` (data-parallel training, chapter 10)::

    torchrun --standalone --nproc-per-node 2 -m scratchnn train --device cpu --threads 1 ...

Each process joins the group (``scratchnn.distributed.start``) and calls ``train``; only
process 0 prints and writes files.
"""
import argparse
import contextlib
import math
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import data, datasets, distributed, settings
from .files import (CHECKPOINT_FILE, check_can_write_in, check_run_folder, load_checkpoint,
                    read_network_weights, remove_old_run)
from .imagefile import (DEFAULT_QUALITY, LOSSY_FORMATS, check_before_denoising,
                        check_output_folder, image_files_in, image_format, read_image,
                        write_image)
from .inference import denoise
from .shipped import best_shipped_network, load_pretrained_state_dict
from .networks import ARCHITECTURES, architecture, build_network, check_trainable_size
from .networks import network_from_state_dict
from .progress import progress_bar
from .train import TrainingDiverged, check_same_run, resolve_device, train

# --- data ----------------------------------------------------------------------------------------


def load_training_data(args):
    """(train_input, train_target, validation), uint8 (N, 3, H, W), from the options.

    ``validation`` maps a name to (noisy, clean) images; the first set is the main one.
    """
    if is_photo_collection(args.data):
        return fresh_training_data(args)
    if args.crop is not None or args.clip or args.steps_per_epoch is not None:
        raise ValueError(f"--crop, --clip and --steps-per-epoch are settings of fresh pairs "
                         f"(--data cbsd432 or a folder of photographs), not of --data {args.data}")
    if args.data != "default" and (args.augment or args.recolour):
        raise ValueError(f"--augment and --recolour change the crops of --data default; "
                         f"they do not apply to --data {args.data}")
    if args.data == "course":
        return course_training_data(args)
    noise = data.noise_from_spec(args.noise)
    num_pairs = args.num_pairs or settings.DEFAULT_NUM_PAIRS
    num_val = args.num_val or settings.DEFAULT_NUM_VAL
    if args.data == "default":
        pairs = data.make_noise2noise_pairs(num_pairs, seed=args.seed, noise=noise,
                                            augment=args.augment, return_clean=args.clean_targets,
                                            recolour=args.recolour)
        validation = bundled_validation(args, noise)
    else:  # cifar10
        pairs = data.cifar10_noise2noise_pairs(args.cifar_root, num_pairs, seed=args.seed,
                                               noise=noise, return_clean=args.clean_targets)
        val_noisy, _, val_clean = data.cifar10_noise2noise_pairs(
            args.cifar_root, num_val, seed=settings.VALIDATION_SEED, noise=noise, train=False,
            return_clean=True)
        validation = {"cifar10": (val_noisy, val_clean)}
    train_target = pairs[2] if args.clean_targets else pairs[1]
    return pairs[0], train_target, validation


def course_training_data(args):
    """The course's pickles; the noise is already in them, so ``--noise`` does not apply."""
    if not args.train_file or not args.val_file:
        raise ValueError("--data course needs --train-file train_data.pkl and "
                         "--val-file val_data.pkl")
    if args.clean_targets:
        raise ValueError("--clean-targets is impossible with --data course: its training set "
                         "has no clean images")
    train_input, train_target = data.load_course_data(args.train_file)
    val_noisy, val_clean = data.load_course_data(args.val_file)
    num_pairs = args.num_pairs or len(train_input)
    num_val = args.num_val or len(val_noisy)
    return (train_input[:num_pairs], train_target[:num_pairs],
            {"course": (val_noisy[:num_val], val_clean[:num_val])})


FIXED_SOURCES = ("default", "course", "cifar10")


def is_photo_collection(name):
    """True when ``--data`` names a standard training set or a folder of photographs, whose
    pairs are drawn afresh for every step (``data.FreshPairs``)."""
    return name not in FIXED_SOURCES


def photo_collection(name):
    """The clean photographs of ``--data``: a standard set by name, or a folder of images."""
    if name in datasets.registry():
        return datasets.load_standard_set(name)[1]
    if Path(name).expanduser().is_dir():
        return datasets.load_image_folder(name)[1]
    raise ValueError(f"--data {name}: expected one of {', '.join(FIXED_SOURCES)}, a standard "
                     f"set ({', '.join(sorted(datasets.registry()))}) or a folder of images")


def fresh_training_data(args):
    """Fresh pairs from a collection of photographs, and the bundled validation sets.

    ``--monitor SET`` adds a standard test set, noisy under the standard protocol (unclipped,
    fixed noise seed), measured after every epoch but never used to pick the best epoch.
    """
    if args.clean_targets and args.recolour:
        raise ValueError("--recolour is a setting of --data default")
    if args.recolour or args.num_pairs is not None:
        raise ValueError(f"--recolour and --num-pairs are settings of --data default; --data "
                         f"{args.data} draws fresh pairs for every step")
    noise = data.noise_from_spec(args.noise)
    pairs = data.FreshPairs(tuple(photo_collection(args.data)),
                            crop_size=args.crop or settings.DEFAULT_CROP, noise=noise,
                            augment=args.augment, clip=args.clip,
                            clean_targets=args.clean_targets, seed=args.seed)
    validation = bundled_validation(args, noise)
    if args.monitor:
        sigma = noise.sigma * 255 if isinstance(noise, data.GaussianNoise) else None
        if sigma is None:
            raise ValueError("--monitor adds the standard protocol's Gaussian noise; it needs "
                             "--noise gaussian:SIGMA")
        validation[args.monitor] = datasets.standard_noisy_set(args.monitor, sigma)
    return pairs, None, validation


def bundled_validation(args, noise):
    """The two held-out sets of photographs shipped with scikit-image and scikit-learn."""
    num_val = args.num_val or settings.DEFAULT_NUM_VAL
    return {name: data.make_validation_set(num_val, seed=settings.VALIDATION_SEED, noise=noise,
                                           photos=photos)
            for name, photos in (("photos", data.VALIDATION_PHOTOS),
                                 ("varied", data.VARIED_VALIDATION_PHOTOS))}


def network_options(args):
    """The U-Net's own options, when given (``--depth``, ``--upsampling``)."""
    options = {name: value for name, value in (("depth", args.depth),
                                               ("upsampling", args.upsampling))
               if value is not None}
    if options and args.network != "unet":
        raise ValueError(f"--depth and --upsampling are options of --network unet, not of "
                         f"{args.network}")
    return options


def build_for_framework(kind, channels, framework, options=None):
    """The network to train: from scratch, or its ``torch.nn`` twin (for comparison)."""
    if framework == "torch":
        from .reference import build_reference
        return build_reference(kind, channels, **(options or {}))
    return build_network(kind, channels, **(options or {}))


# --- train ---------------------------------------------------------------------------------------


def run_config(args):
    """What defines the run, stored in the checkpoint: a resume must not change any of it."""
    return {"network": args.network,
            "channels": args.channels or architecture(args.network).default_channels,
            "data": args.data, "noise": None if args.data == "course" else args.noise,
            "train_file": args.train_file, "val_file": args.val_file,
            "num_val": args.num_val,
            "clean_targets": args.clean_targets, "augment": args.augment,
            "recolour": args.recolour, **fresh_config(args), **network_options(args)}


def fresh_config(args):
    """The settings of fresh pairs, for runs that use them (older runs' checkpoints lack them)."""
    if not is_photo_collection(args.data):
        return {}
    return {"crop": args.crop or settings.DEFAULT_CROP, "clip": args.clip,
            "monitor": args.monitor}


def nothing_left_to_do(args):
    """With ``--resume``, say so when the checkpoint already reached ``--epochs``."""
    checkpoint = load_checkpoint(args.out) if args.resume else None
    if checkpoint is None or checkpoint["epoch"] < args.epochs:
        return False
    say(f"nothing to do: the run in {args.out} already finished epoch {checkpoint['epoch']} "
        f"(--epochs {args.epochs}); ask for more epochs to train further")
    return True


def say(message):
    """Print a line, once: under torchrun only process 0 speaks."""
    if distributed.is_main_process():
        print(message, flush=True)


def train_command(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    check_before_training(args)  # nothing is built or written before every check has passed
    if nothing_left_to_do(args):
        return 0
    device = resolve_device(args.device)
    replace_old_run(args)
    device = distributed.start(device)  # joins torchrun's group, if any
    try:
        return train_on_this_device(args, device)
    finally:
        distributed.stop()


def train_on_this_device(args, device):
    """Build the data and the network, and train (in every process, under torchrun)."""
    options = network_options(args)
    train_input, train_target, validation = load_training_data(args)
    fresh = train_target is None
    crops = train_input.batch(0, 1)[0] if fresh else train_input
    check_trainable_size(crops, "the training images", args.network, **options)
    torch.manual_seed(args.seed)  # the network's initial weights
    network = build_for_framework(args.network, args.channels, args.framework, options)
    size = distributed.world_size()
    pairs = (f"fresh pairs of {train_input.crop_size}x{train_input.crop_size} crops of "
             f"{len(train_input.images)} {args.data} photographs "
             f"({args.steps_per_epoch or settings.DEFAULT_STEPS_PER_EPOCH} steps an epoch)"
             if fresh else f"{len(train_input)} {args.data} pairs")
    say(f"training {args.framework} {args.network} on {pairs} "
        f"({'clean' if args.clean_targets else 'noisy'} targets), validating on "
        f"{' and '.join(f'{len(pair[0])} {name}' for name, pair in validation.items())} "
        f"images, device {device}"
        + (f", {size} processes sharing every batch of {args.batch_size}" if size > 1 else "")
        + f"; files in {args.out}")
    train_settings = settings.TrainSettings(
        optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
        batch_size=args.batch_size, device=str(device), seed=args.seed,
        lr_schedule=args.lr_schedule)
    started = time.perf_counter()
    history = train(network, train_input, train_target, args.epochs, settings=train_settings,
                    validation=validation, out_dir=args.out, resume=args.resume,
                    overwrite=args.overwrite, config=run_config(args),
                    callbacks=[epoch_logger(list(validation), args.epochs)],
                    steps_per_epoch=(args.steps_per_epoch or settings.DEFAULT_STEPS_PER_EPOCH)
                    if fresh else None)
    if distributed.is_main_process():  # the others have no validation PSNRs to report
        print(f"epoch {history['epoch'][-1]}: validation PSNR {history['val_psnr'][-1]:.2f} dB "
              f"(noisy input {history['baseline_psnr']:.2f} dB; best epoch "
              f"{history['best_epoch']}, weights in best.pth); "
              f"{time.perf_counter() - started:.0f} s in this run", flush=True)
    return 0


# --- train: every check before the work ----------------------------------------------------------


def check_before_training(args):
    """Every check that needs no data, before any data is built or any file is touched.

    Building 50,000 training pairs takes a while; a typing mistake in ``--lr`` or ``--out``
    must not be found after it. Checked: the run folder (a folder, writable, not holding another
    run unasked), the learning rate and the optimizer's settings, the data files, and with
    ``--resume`` the checkpoint and the settings it was made with.
    """
    check_run_folder(args.out, args.resume, args.overwrite)
    check_can_write_in(args.out, f"--out {args.out}")
    check_optimizer_settings(args)
    check_data_files(args)
    if args.resume:
        check_resumable(args)


def check_optimizer_settings(args):
    """A learning rate that can train (finite, > 0), and settings the optimizer accepts."""
    if args.lr is not None and not 0 < args.lr < math.inf:
        raise ValueError(f"--lr must be a finite number > 0, got {args.lr:g}")
    if not 0 <= args.momentum < math.inf:
        raise ValueError(f"--momentum must be a finite number >= 0, got {args.momentum:g}")
    settings.TrainSettings(optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                           batch_size=args.batch_size)  # refuses e.g. --momentum with Adam


def check_data_files(args):
    """The data files named on the command line exist."""
    for option, path in (("--train-file", args.train_file), ("--val-file", args.val_file)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{option} {path}: no such file")


def check_resumable(args):
    """``--resume`` needs a checkpoint of this run in ``--out``.

    Refused: no checkpoint at all (a typing mistake in the folder's name must not quietly start
    a new run), a file that is not a checkpoint, a checkpoint made with other settings.
    """
    checkpoint = load_checkpoint(args.out)
    if checkpoint is None:
        raise FileNotFoundError(f"--resume: there is no {CHECKPOINT_FILE} in {args.out}, so "
                                f"no run to continue; check the folder's name, or leave out "
                                f"--resume to start a new run")
    check_same_settings(checkpoint, args)


def settings_on_the_command_line(args):
    """The part of a checkpoint's ``config`` that the command line decides, known before any
    data is built (``train`` adds what depends on the data, e.g. the number of pairs)."""
    kind = settings.optimizer_kind(args.optimizer)
    return {**run_config(args), "seed": args.seed, "batch_size": args.batch_size,
            "optimizer": kind.scratch.__name__,
            "lr": kind.default_lr if args.lr is None else args.lr,
            "momentum": args.momentum, "framework": args.framework}


def check_same_settings(checkpoint, args):
    """Raise a ``ValueError`` unless ``checkpoint`` was made with this command's settings."""
    current = settings_on_the_command_line(args)
    check_same_run({key: checkpoint["config"].get(key) for key in current}, current)


def replace_old_run(args):
    """``--overwrite``: delete the old run's files now, before anything else happens.

    Otherwise its ``network.pth`` and ``best.pth`` would stay beside the new run until the new
    run writes its own, and an interrupted new run would look like the old one.
    """
    if args.overwrite and distributed.is_main_process():
        removed = remove_old_run(args.out)
        if removed:
            say(f"--overwrite: removed the previous run's {', '.join(removed)} from {args.out}")


# --- train: what a long run tells ----------------------------------------------------------------


def epoch_logger(set_names, num_epochs):
    """A callback for ``train`` that prints one line per epoch, whatever the progress bars do.

    With the bars off (``TQDM_DISABLE=1``, ``nohup``, a cluster job) these lines are the log of
    a run that may last hours. ``set_names`` are the validation sets, the main one first.
    """
    def log_epoch(epoch, history):
        if distributed.is_main_process():  # the others measure no validation PSNR
            print(epoch_line(epoch, num_epochs, history, set_names), flush=True)
    return log_epoch


def epoch_line(epoch, num_epochs, history, set_names):
    """``epoch 3/20: train loss 0.004123; validation photos 27.41 dB, varied 29.80 dB; 213 s;
    best so far: epoch 3 (27.41 dB)`` (PSNRs; the time is the epoch's training)."""
    psnrs = [history["val_psnr"][-1]] + [history["other_val_psnr"][name][-1]
                                         for name in set_names[1:]]
    measured = ", ".join(f"{name} {value:.2f} dB" for name, value in zip(set_names, psnrs))
    best = history["best_epoch"]
    best_psnr = history["val_psnr"][history["epoch"].index(best)]
    return (f"epoch {epoch}/{num_epochs}: train loss {history['train_loss'][-1]:.6f}; "
            f"validation {measured}; {history['seconds'][-1]:.0f} s; "
            f"best so far: epoch {best} ({best_psnr:.2f} dB)")


def saved_so_far(args, argv):
    """What a stopped ``train`` leaves in ``--out``, and the command that continues it.

    ``--resume`` is suggested only when it would work: a readable checkpoint of this run.
    """
    epoch = resumable_epoch(args)
    if epoch is None:
        return "nothing was saved: this run had not written its first checkpoint yet"
    command = [arg for arg in argv if arg not in ("--resume", "--overwrite")] + ["--resume"]
    launcher = "torchrun [its options] -m scratchnn" if distributed.launched_by_torchrun() \
        else "python -m scratchnn"
    return (f"epoch {epoch}, the last one finished, is saved in {args.out}; continue with: "
            f"{launcher} {shlex.join(command)}")


def resumable_epoch(args):
    """The epoch ``--resume`` would continue after, or None when it would fail: no checkpoint,
    an unreadable one, or one of another run (one that ``--overwrite`` had not yet removed)."""
    try:
        checkpoint = load_checkpoint(args.out)
        if checkpoint is not None:
            check_same_settings(checkpoint, args)
    except (ValueError, OSError):
        return None
    return None if checkpoint is None else checkpoint["epoch"]


def interrupted_message(args, argv, what="interrupted"):
    """What Ctrl-C (or SIGTERM: ``what``) during a command leaves behind."""
    return f"{what}: {saved_so_far(args, argv)}" if args.command == "train" else what


# --- denoise -------------------------------------------------------------------------------------


def load_network(path):
    """A from-scratch network from ``--weights`` (a weights file or a checkpoint); by default,
    the best network shipped with the package."""
    if path is None:
        return network_from_state_dict(load_pretrained_state_dict(best_shipped_network()))
    return network_from_state_dict(read_network_weights(path))


def denoise_command(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    jobs = denoise_jobs(args)
    quality = output_quality(args, jobs)
    for source, target in jobs:  # every check before any work or any write
        check_before_denoising(source, target, quality)
    check_output_folders(args, jobs)
    network = load_network(args.weights).to(device=resolve_device(args.device))
    if args.out_dir is not None:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    for source, target in progress_bar(jobs, "images", progress=len(jobs) > 1):
        denoise_file(network, source, target, quality)
    return 0


def denoise_jobs(args):
    """The ``(input, output)`` paths to denoise: ``IN OUT``, or ``IN... --out-dir DIR`` where
    each image keeps its name and a folder stands for the image files in it."""
    paths = [Path(path) for path in args.images]
    if args.out_dir is None:
        if len(paths) != 2:
            raise ValueError(f"expected IN OUT (an image, and the file to write), got "
                             f"{len(paths)} path(s); to denoise several images or a folder, "
                             f"add --out-dir DIR")
        if paths[1].is_dir():
            raise ValueError(f"{paths[1]} is a folder; to write into it, use --out-dir "
                             f"{paths[1]}")
        return [(paths[0], paths[1])]
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out-dir {out_dir} is a file; expected a folder")
    sources = [image for path in paths
               for image in (image_files_in(path) if path.is_dir() else [path])]
    jobs, written_by = [], {}
    for source in sources:
        target = out_dir / source.name
        if target in written_by:
            raise ValueError(f"{written_by[target]} and {source} would both be written to "
                             f"{target}; denoise them into different folders")
        written_by[target] = source
        jobs.append((source, target))
    return jobs


def output_quality(args, jobs):
    """The JPEG and WebP quality: ``--quality``, refused (not ignored) when no output is a JPEG
    or a WebP file."""
    if args.quality is None:
        return DEFAULT_QUALITY
    formats = {image_format(target) for _, target in jobs}
    if not formats & set(LOSSY_FORMATS):
        raise ValueError(f"--quality applies to JPEG and WebP files; the output is "
                         f"{' and '.join(sorted(formats))}")
    return args.quality


def check_output_folders(args, jobs):
    """The folders the images go to exist (``--out-dir`` is made if missing) and are writable."""
    if args.out_dir is not None:
        check_can_write_in(args.out_dir, f"--out-dir {args.out_dir}")
        return
    for _, target in jobs:
        check_output_folder(target)


def denoise_file(network, source, target, quality):
    """Read, denoise (a bar counts the tiles of a large image), write; then one line."""
    image, colour_channels, alpha = read_image(source)
    started = time.perf_counter()
    try:
        denoised = denoise(network, image, progress=source.name)
    except ValueError as error:
        raise ValueError(f"{source}: {error}; nothing was written to {target}") from None
    write_image(target, denoised, colour_channels, alpha, quality)
    height, width = image.shape[2:]
    tqdm.write(f"denoised {source} ({width}x{height}) in {time.perf_counter() - started:.1f} s "
               f"-> {target}")


# --- download ------------------------------------------------------------------------------------


def download_command(args):
    for name in args.names:
        if args.source is not None:
            folder = datasets.install_from(name, args.source)
        else:
            print(f"downloading {name} ({datasets.SOURCES[name]})", flush=True)
            folder = datasets.download(name)
        count = len(datasets.registry()[name]["files"])
        print(f"{name}: {count} files, checksums verified, in {folder}")
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


def quality_value(text):
    """An argparse type: a JPEG/WebP quality, a whole number from 1 to 100."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 100, got {text!r}")
    return value


def add_data_arguments(parser):
    source = parser.add_argument_group("data")
    source.add_argument("--data", default="default", metavar="SOURCE",
                        help="default: crops of photographs shipped with scikit-image and "
                             "scikit-learn (offline); course: the course's pickles (--train-file, "
                             "--val-file); cifar10: CIFAR-10 via torchvision (downloads ~170 MB); "
                             "cbsd432: the standard training set (python -m scratchnn download "
                             "cbsd432 first), or a FOLDER of your own photographs: fresh crops "
                             "and noise for every step. Default: %(default)s")
    source.add_argument("--train-file",
                        help="course training data: train_data.pkl (two noisy uint8 tensors)")
    source.add_argument("--val-file", help="course validation data: val_data.pkl (noisy, clean)")
    source.add_argument("--cifar-root", default="data",
                        help="where CIFAR-10 is downloaded. Default: %(default)s")
    source.add_argument("--noise", default=settings.DEFAULT_NOISE,
                        help="noise model: gaussian:SIGMA (SIGMA in 0..255) or poisson:PEAK; not "
                             "used with --data course, whose images are already noisy. "
                             "Default: %(default)s")
    source.add_argument("--num-pairs", type=positive_int, default=None,
                        help=f"number of training pairs. Default: {settings.DEFAULT_NUM_PAIRS} "
                             f"(all of them for --data course)")
    source.add_argument("--num-val", type=positive_int, default=None,
                        help=f"number of images in each validation set. Default: "
                             f"{settings.DEFAULT_NUM_VAL} (all of them for --data course)")
    source.add_argument("--clean-targets", action="store_true",
                        help="train on (noisy, clean) pairs instead of (noisy, noisy): "
                             "Noise2Clean, the upper bound Noise2Noise is compared with")
    source.add_argument("--augment", action="store_true",
                        help="turn and mirror each training crop at random (the 8 symmetries of "
                             "a square)")
    source.add_argument("--crop", type=positive_int, default=None,
                        help=f"fresh pairs: crop size. Default: {settings.DEFAULT_CROP} (the "
                             f"course's); 64 or more for a deeper U-Net")
    source.add_argument("--clip", action="store_true",
                        help="fresh pairs: store noisy images as the course does, clipped to "
                             "0..255 and rounded (default: unclipped floats, as the Noise2Noise "
                             "paper's code)")
    source.add_argument("--monitor", choices=sorted(datasets.registry()), default=None,
                        help="fresh pairs: also measure this standard test set (standard "
                             "protocol: unclipped Gaussian noise, fixed seed) after every epoch; "
                             "never used to pick the best epoch")
    source.add_argument("--recolour", action="store_true",
                        help="permute the colour channels of each training crop and invert its "
                             "brightness at random (--data default, Gaussian noise)")


def add_network_arguments(parser):
    net = parser.add_argument_group("network")
    net.add_argument("--network", choices=sorted(ARCHITECTURES), default=settings.DEFAULT_NETWORK,
                     help="; ".join(f"{name}: {variant.description}"
                                    for name, variant in ARCHITECTURES.items())
                     + ". Default: %(default)s")
    net.add_argument("--channels", type=positive_int, default=None,
                     help="hidden channels. Default: the network's own ("
                          + ", ".join(f"{name}: {variant.default_channels}"
                                      for name, variant in ARCHITECTURES.items()) + ")")
    net.add_argument("--depth", type=int, default=None,
                     choices=architecture("unet").options["depth"],
                     help="U-Net: levels (it halves the image that often; crops must be "
                          "multiples of 2**depth). Default: 3")
    net.add_argument("--upsampling", choices=architecture("unet").options["upsampling"],
                     default=None,
                     help="U-Net: how each level comes back up: transposed (2x2 stride-2 "
                          "transposed convolution) or nearest (nearest x2 then a 3x3 "
                          "convolution). Default: transposed")
    net.add_argument("--framework", choices=["scratchnn", "torch"], default="scratchnn",
                     help="scratchnn: the from-scratch framework; torch: the same network in "
                          "torch.nn with autograd (scratchnn.reference), to compare. "
                          "Default: %(default)s")


def add_training_arguments(parser):
    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=positive_int, default=settings.DEFAULT_EPOCHS,
                     help="total number of epochs of the run. Default: %(default)s")
    fit.add_argument("--batch-size", type=positive_int, default=settings.DEFAULT_BATCH_SIZE,
                     help="pairs per mini-batch, all processes together: under torchrun each "
                          "process takes an equal share of every batch. Default: %(default)s")
    fit.add_argument("--optimizer", choices=sorted(settings.OPTIMIZERS),
                     default=settings.DEFAULT_OPTIMIZER, help="Default: %(default)s")
    fit.add_argument("--lr", type=float, default=None,
                     help="learning rate. Default: " + ", ".join(
                         f"{kind.default_lr:g} for {name}"
                         for name, kind in settings.OPTIMIZERS.items()))
    fit.add_argument("--momentum", type=float, default=0.0,
                     help="SGD momentum. Default: %(default)s")
    fit.add_argument("--lr-schedule", choices=settings.LR_SCHEDULES,
                     default=settings.DEFAULT_LR_SCHEDULE,
                     help="constant; cosine (down to 0 over the run); rampdown (the Noise2Noise "
                          "code's: down to 0 over the last 30%% of the steps). Default: "
                          "%(default)s")
    fit.add_argument("--steps-per-epoch", type=positive_int, default=None,
                     help=f"fresh pairs: steps between two validations. Default: "
                          f"{settings.DEFAULT_STEPS_PER_EPOCH}")
    fit.add_argument("--seed", type=int, default=0,
                     help="seeds the training data, the initial weights and the shuffling. "
                          "Default: %(default)s")


def add_run_arguments(parser):
    run = parser.add_argument_group("run")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                     help="auto: the GPU if PyTorch sees one, else the CPU. Under torchrun, "
                          "cuda gives each process its own GPU (NCCL) and cpu runs the "
                          "processes on the CPU (gloo). Default: %(default)s")
    run.add_argument("--threads", type=positive_int, default=None,
                     help="CPU threads for PyTorch (per process under torchrun). "
                          "Default: PyTorch's choice")
    run.add_argument("--out", default="runs/n2n",
                     help="folder for checkpoint.pt, history.json, psnr.png, best.pth and "
                          "network.pth. Default: %(default)s")
    again = run.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue from the checkpoint in --out (same settings; --epochs may "
                            "be larger)")
    again.add_argument("--overwrite", action="store_true",
                       help="start a new run in --out even though it holds one, replacing it")


def make_parser():
    parser = argparse.ArgumentParser(prog="python -m scratchnn",
                                     description="Noise2Noise from scratch: train a denoiser, "
                                                 "or denoise an image.")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser(
        "train", help="train a denoising network",
        description="Train a denoiser and write checkpoints, history.json and a PSNR plot to "
                    "--out. Runs unchanged on several processes (data parallelism, chapter 10): "
                    "torchrun --standalone --nproc-per-node 2 -m scratchnn train --device cpu "
                    "... (or --device cuda, one GPU per process). --batch-size stays the "
                    "global batch; only process 0 validates and writes files.")
    for add_arguments in (add_data_arguments, add_network_arguments, add_training_arguments,
                          add_run_arguments):
        add_arguments(train_parser)
    train_parser.set_defaults(run=train_command)
    denoise_parser = commands.add_parser(
        "denoise", help="denoise image files of any size",
        description="Denoise images (PNG, JPEG, ...; grayscale, RGB or RGBA) of any size with "
                    "a trained network: IN OUT writes one image, whose format follows OUT's "
                    "extension; IN... --out-dir DIR writes each image (or each image of a "
                    "folder) into DIR under its own name. Everything is checked before the "
                    "first image is denoised.")
    denoise_parser.add_argument("images", nargs="+", metavar="IMAGE",
                                help="IN OUT: the noisy image and where to write the denoised "
                                     "one (8 bits per channel); with --out-dir: noisy images "
                                     "and folders of them")
    denoise_parser.add_argument("--out-dir", default=None,
                                help="write every denoised image into this folder (made if "
                                     "missing), under the name of its input")
    denoise_parser.add_argument("--quality", type=quality_value, default=None,
                                help=f"quality of JPEG and WebP outputs, 1 (smallest file) to "
                                     f"100. Default: {DEFAULT_QUALITY}")
    denoise_parser.add_argument("--weights", default=None,
                                help="network.pth, best.pth or a checkpoint.pt. Default: the "
                                     "best network shipped with the package "
                                     "(scratchnn/pretrained/)")
    denoise_parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                                help="Default: %(default)s")
    denoise_parser.add_argument("--threads", type=positive_int, default=None,
                                help="CPU threads for PyTorch")
    denoise_parser.set_defaults(run=denoise_command)
    download_parser = commands.add_parser(
        "download", help="fetch a standard data set (cbsd432, cbsd68, kodak24) into the cache",
        description="Fetch a standard data set once, from a public repository at a pinned "
                    "commit, checking every file's sha256, into $SCRATCHNN_DATA (default: "
                    "~/.cache/scratchnn). Without internet, --from DIR installs it from a copy.")
    download_parser.add_argument("names", nargs="+", choices=sorted(datasets.registry()),
                                 metavar="NAME", help="one or more of: "
                                 + ", ".join(sorted(datasets.registry())))
    download_parser.add_argument("--from", dest="source", default=None, metavar="DIR",
                                 help="install from a local folder holding the files (searched "
                                      "recursively by name) instead of downloading")
    download_parser.set_defaults(run=download_command)
    return parser


# --- the entry point: one line for every failure -------------------------------------------------

# Mistakes in the command (a file that is missing, a folder that cannot be written, a bad
# value): exit code 2, like argparse's own errors.
COMMAND_MISTAKES = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                    PermissionError)


class Terminated(KeyboardInterrupt):
    """SIGTERM, as an exception: how a cluster's scheduler, ``kill`` or torchrun stop a job.

    A kind of KeyboardInterrupt, so SIGTERM stops a command exactly as Ctrl-C does: the file
    being written is dropped, the last checkpoint stays, and the command that resumes is shown.
    """


@contextlib.contextmanager
def sigterm_stops_like_ctrl_c():
    """Within the block, SIGTERM raises ``Terminated``; a second SIGTERM stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals
        return
    previous = signal.getsignal(signal.SIGTERM)

    def stop(signal_number, frame):
        signal.signal(signal.SIGTERM, previous)
        raise Terminated()

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def fail(message, exit_code):
    """Report a failure in one line (under torchrun: process 0 prints it, and every process
    leaves it for torchrun's own report); returns the exit code."""
    if distributed.is_main_process():
        print(message, file=sys.stderr, flush=True)
    distributed.report_error_to_torchrun(message.strip())
    return exit_code


def os_error_in_words(error):
    """An ``OSError`` as a sentence, without Python's ``[Errno 28]`` prefix."""
    if error.strerror is None:
        return str(error)
    return f"{error.strerror}: {error.filename}" if error.filename else error.strerror


def main(argv=None):
    """Entry point of ``python -m scratchnn`` and of the ``scratchnn`` console script.

    Every failure the user can do something about ends in one ``error:`` line and an exit code:
    2 for a mistake in the command, 1 for a failure along the way (training diverged, the disk
    is full), 130 for Ctrl-C and 143 for SIGTERM. Exit codes are never 0 after a failure, also
    under ``torchrun``: a script or a scheduler must see it. torchrun then adds a report of its
    own after our line; its "Root Cause" repeats our line (``report_error_to_torchrun``).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        with sigterm_stops_like_ctrl_c():
            return args.run(args)
    except TrainingDiverged as error:
        return fail(f"error: {error}", 1)
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, Terminated):
            return fail(interrupted_message(args, argv, "terminated (SIGTERM)"), 143)
        return fail("\n" + interrupted_message(args, argv), 130)  # after the terminal's ^C
    except COMMAND_MISTAKES as error:
        fail(f"error: {error}", 2)
        parser.exit(2)
    except OSError as error:  # the machine rather than the command: a full disk, a lost drive
        during = f"; {saved_so_far(args, argv)}" if args.command == "train" else ""
        return fail(f"error: {os_error_in_words(error)}{during}", 1)
