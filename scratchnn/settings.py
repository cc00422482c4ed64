"""Every default of training in one visible block, and the settings of one training run.

The command line, the course's ``Model`` and ``train()`` all read their defaults from here, so
a reader finds and changes a setting in one place (the style of nanoGPT's ``train.py``).
The optimizers themselves (their registry, the factory) are in ``scratchnn.optimizers``.
"""
from dataclasses import dataclass

import torch

# The registry of optimizers lives in optimizers.py; the command line reads it here too.
from .optimizers import LR_SCHEDULES, OPTIMIZERS, check_momentum, optimizer_kind  # noqa: F401

# --- the defaults --------------------------------------------------------------------------------

# Chosen by measurement: the seed000 network (torch.nn twin, same arithmetic) on 4,000 default
# pairs for 3 epochs; PSNR on 300 validation images after epochs 1, 2, 3 (noisy: 20.64 dB):
#   SGD lr 0.1, batch 8 (seed 000's setting)  23.45  23.76  23.97 dB
#   SGD lr 0.1, momentum 0.9, batch 16        24.59  24.89  25.78 dB
#   Adam lr 1e-3, batch 8                     27.02  27.62  26.59 dB
#   Adam lr 1e-3, batch 16                    26.13  27.07  27.52 dB   <- steadier
DEFAULT_NETWORK = "seed000"
DEFAULT_OPTIMIZER = "adam"
DEFAULT_BATCH_SIZE = 16
DEFAULT_EPOCHS = 20
DEFAULT_NUM_PAIRS = 50_000      # the course's training set size
DEFAULT_NUM_VAL = 1000          # the course's validation set size
DEFAULT_NOISE = "gaussian:25"   # the Noise2Noise paper's sigma = 25 (on 0..255)
VALIDATION_SEED = 0             # the same validation images whatever the training seed
DEFAULT_LR_SCHEDULE = "constant"
# Training on a standard set (``--data cbsd432`` or a folder): fresh crops and noise every step.
DEFAULT_CROP = 32               # the course's; 64 or more suits a deeper U-Net
DEFAULT_STEPS_PER_EPOCH = 1000


@dataclass(frozen=True)
class TrainSettings:
    """How ``train()`` optimises: the optimizer, its step, the batches, the device and the seed.

    ``lr=None`` takes the optimizer's ``default_lr``. ``seed`` fixes the shuffling of every
    epoch (the network's initial weights are fixed by whoever builds it).
    """
    optimizer: str = DEFAULT_OPTIMIZER
    lr: float | None = None
    momentum: float = 0.0
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "auto"
    dtype: torch.dtype = torch.float32
    seed: int = 0
    lr_schedule: str = DEFAULT_LR_SCHEDULE

    def __post_init__(self):
        check_momentum(self.optimizer, self.momentum)  # also: an unknown optimizer's name
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {self.lr_schedule!r}; expected one "
                             f"of {LR_SCHEDULES}")
        if not (isinstance(self.batch_size, int) and not isinstance(self.batch_size, bool)
                and self.batch_size >= 1):
            raise ValueError(f"expected batch_size to be an int >= 1, got {self.batch_size!r}")

    @property
    def learning_rate(self):
        return optimizer_kind(self.optimizer).default_lr if self.lr is None else self.lr
