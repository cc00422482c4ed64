"""Figures for training runs: PSNR curves, and images as matplotlib shows them.

Each function draws on a matplotlib ``Axes`` you pass (or makes its own figure) and returns the
figure, so it works both in a notebook (``plt.show()``) and in the training loop, which writes
PNG files without ever opening a window (``save_psnr_plot`` uses a bare ``Figure``: no pyplot,
no display backend needed).
"""
from matplotlib.figure import Figure


def plot_psnr_curves(histories, ax=None, show_baseline=True):
    """Validation PSNR against epoch, one curve per run.

    ``histories`` maps a label to a history from ``scratchnn.train.train`` (or ``history.json``).
    The dashed line is the do-nothing baseline: the PSNR of the noisy images themselves.
    """
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(6, 4), dpi=100)
    baseline = None
    for label, history in histories.items():
        points = [(epoch, value) for epoch, value in zip(history["epoch"], history["val_psnr"])
                  if value is not None]
        ax.plot([epoch for epoch, _ in points], [value for _, value in points], marker="o",
                markersize=3, label=label)
        baseline = history.get("baseline_psnr") if baseline is None else baseline
    if show_baseline and baseline is not None:
        ax.axhline(baseline, color="gray", linestyle="--",
                   label=f"noisy input ({baseline:.2f} dB)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax.figure


def save_psnr_plot(histories, path, file_format=None):
    """Write ``plot_psnr_curves`` to an image file: a file name (the format follows its suffix)
    or an open binary file (then ``file_format`` names the format, e.g. ``"png"``)."""
    figure = Figure(figsize=(6, 4), dpi=100)
    plot_psnr_curves(histories, ax=figure.add_subplot())
    figure.tight_layout()
    figure.savefig(path, format=file_format or str(path).rsplit(".", 1)[-1])


def as_displayable(image):
    """A (3, H, W) image, values 0..255 (uint8 or float), as an (H, W, 3) array in [0, 1]."""
    return (image.detach().float().cpu().clamp(0, 255) / 255).permute(1, 2, 0).numpy()
