"""The course's ``Model`` class: ``Model()``, ``load_pretrained_model()``, ``train``, ``predict``.

The course API takes and returns images the way the course stores them: tensors of shape
(N, 3, H, W) with values 0..255. The networks it loads ship inside the package
(``scratchnn.shipped``).
"""
import torch

from .inference import check_images, denoise
from .networks import build_network, check_trainable_size
from .settings import DEFAULT_BATCH_SIZE, TrainSettings
from .shipped import best_shipped_network, load_pretrained_state_dict, shipped_architecture
from .optimizers import make_optimizer
from .train import train

class Model:
    """The course's interface: ``Model()``, ``load_pretrained_model()``, ``train``, ``predict``.

    ``Model()`` is the best network shipped with the package; ``Model(network="seed000")`` names
    a shipped network (``shipped_networks()``) or an architecture
    (``scratchnn.networks.ARCHITECTURES``), built as its shipped card says when there is one.
    Images are (N, 3, H, W) tensors, uint8 or float, with values 0..255. The network runs on
    the GPU when there is one.
    """

    def __init__(self, network=None):
        self.network_kind = best_shipped_network() if network is None else network
        kind, channels, options = shipped_architecture(self.network_kind)
        self.architecture = kind
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.network = build_network(kind, channels, **options).to(self.device)
        self.settings = TrainSettings(batch_size=DEFAULT_BATCH_SIZE, device=self.device.type)
        self.optimizer = make_optimizer(self.network, self.settings.optimizer)
        self.train_calls = 0

    def load_pretrained_model(self):
        """Load the shipped weights of this network (``scratchnn/pretrained/<network>.pth``)."""
        self.network.load_state_dict(load_pretrained_state_dict(self.network_kind))

    def train(self, train_input, train_target, num_epochs):
        """Train on pairs of noisy images (``train_target`` is a second noisy copy of
        ``train_input``).

        Mini-batches of shuffled pairs; the MSE between the network's output and the target is
        minimised with the optimizer kept from one call to the next. Returns the history.
        """
        check_images(train_input, "train_input")
        check_images(train_target, "train_target")
        check_trainable_size(train_input, "train_input", self.architecture,
                             **shipped_architecture(self.network_kind)[2])
        settings = TrainSettings(batch_size=self.settings.batch_size,
                                 device=self.settings.device, seed=self.train_calls)
        history = train(self.network, train_input, train_target, num_epochs, settings=settings,
                        optimizer=self.optimizer)
        self.train_calls += 1  # a different shuffle on the next call
        return history

    def predict(self, test_input):
        """Denoise (N, 3, H, W) images, values 0..255, any H and W; returns floats in [0, 255]."""
        return denoise(self.network, test_input)
