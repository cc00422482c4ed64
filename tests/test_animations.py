"""The animations of ``scratchnn.book.animations``: frame counts, the HTML they embed, and the
numbers they show, read back from the drawn figure and checked against PyTorch.

Rendering costs a fraction of a second per frame, so the numbers are checked on small settings
(4 to 8 frames); the chapters' default settings are only counted.
"""
import gc
import re
import warnings

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from scratchnn.book import animations
from scratchnn.nn.conv import output_length
from scratchnn.nn.fast.fused_upsampling import collapse_kernel

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

def frame_count(animation):
    return sum(1 for _ in animation.new_frame_seq())


def render(animation):
    """The animation's HTML; afterwards its figure shows the last frame."""
    html = animation.to_jshtml(default_mode="loop")
    assert "new Animation(frames" in html and 'id="_anim_img' in html
    frames = re.findall(r'frames\[\d+\] = "data:image/png;base64,', html)
    assert len(frames) == frame_count(animation)
    return html


def shown(ax):
    """The numbers drawn in the cells of ``ax``: {(row, column): value}."""
    cells = {}
    for text in ax.texts:
        if text.get_gid() == "cell":
            x, y = text.get_position()
            cells[int(y), int(x)] = float(text.get_text().replace("−", "-"))
    return cells


def as_tensor(cells, rows, columns, top=0, left=0):
    """Rows x columns of ``cells`` from (top, left), as a float64 tensor; all must be shown."""
    return torch.tensor([[cells[top + r, left + c] for c in range(columns)] for r in range(rows)],
                        dtype=torch.float64)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")
    with warnings.catch_warnings():   # animations that were only counted, collected here
        warnings.filterwarnings("ignore", "Animation was deleted without rendering")
        gc.collect()


@pytest.mark.parametrize("make, frames", [
    (animations.sliding_window, 9),           # 5x5, 3x3, stride 2, padding 1: 3x3 outputs
    (animations.unfold_columns, 9),           # chapter 3's 4x4 image and 2x2 kernel: L = 9
    (animations.backward_flow, 4),            # 5x5, 3x3, stride 2: 2x2 output gradient
    (animations.upsample_and_sumpool, 18),    # 3x3 pixels copied, then 3x3 blocks summed
    (animations.fused_phases, 16),            # a 4x4 output, one pixel per frame
])
def test_default_frame_counts(make, frames):
    assert frame_count(make()) == frames


def test_sliding_window_shows_the_convolution():
    kernel, stride, padding, dilation, size = 2, 2, 1, 2, 4
    animation = animations.sliding_window(kernel, stride, padding, dilation, size)
    assert frame_count(animation) == 4                   # (4 + 2 - 2 - 1) // 2 + 1 = 2 per axis
    render(animation)
    ax_in, ax_kernel, ax_out = animation.figure.axes
    padded = as_tensor(shown(ax_in), size + 2 * padding, size + 2 * padding)
    image = padded[padding:-padding, padding:-padding]
    assert padded.abs().sum() == image.abs().sum()       # the border is zero padding
    weights = as_tensor(shown(ax_kernel), kernel, kernel)
    expected = F.conv2d(image[None, None], weights[None, None], stride=stride, padding=padding,
                        dilation=dilation)[0, 0]
    assert torch.equal(as_tensor(shown(ax_out), 2, 2), expected)


def test_unfold_columns_shows_unfold():
    size, kernel, stride, padding, channels = 3, 2, 2, 1, 2
    animation = animations.unfold_columns(size, kernel, stride, padding, channels=channels)
    assert frame_count(animation) == 4
    render(animation)
    ax_in, ax_columns = animation.figure.axes
    side = size + 2 * padding
    cells = shown(ax_in)
    images = torch.stack([as_tensor(cells, size, size, padding, c * (side + 1) + padding)
                          for c in range(channels)])
    assert torch.equal(images.flatten(), torch.arange(1.0, 1 + channels * size * size,
                                                      dtype=torch.float64))
    expected = F.unfold(images[None], kernel, padding=padding, stride=stride)[0]
    assert torch.equal(as_tensor(shown(ax_columns), channels * kernel * kernel, 4), expected)


@pytest.mark.parametrize("size, kernel, stride, padding, dilation",
                         [(5, 3, 2, 0, 1), (4, 2, 2, 1, 2)])
def test_backward_flow_adds_up_to_the_input_gradient(size, kernel, stride, padding, dilation):
    animation = animations.backward_flow(size, kernel, stride, padding, dilation)
    out_size = output_length(size, kernel, stride, padding, dilation)
    assert frame_count(animation) == out_size ** 2 == 4
    render(animation)
    ax_grad, _, ax_input = animation.figure.axes
    grad_out = as_tensor(shown(ax_grad), out_size, out_size)
    weights = torch.arange(1.0, kernel * kernel + 1, dtype=torch.float64).reshape(kernel, kernel)
    expected = torch.nn.grad.conv2d_input((1, 1, size, size), weights[None, None],
                                          grad_out[None, None], stride, padding, dilation)
    shown_grad = as_tensor(shown(ax_input), size, size, padding, padding)
    assert torch.equal(shown_grad, expected[0, 0])


def test_upsample_and_sumpool_sums_each_block():
    animation = animations.upsample_and_sumpool(size=2, scale=2)
    assert frame_count(animation) == 8                   # 4 pixels copied, 4 blocks summed
    render(animation)
    ax_small, ax_big = animation.figure.axes                # the last frame: the backward pass
    grad_big = as_tensor(shown(ax_big), 4, 4)
    block_sums = grad_big.reshape(2, 2, 2, 2).sum((1, 3))
    assert torch.equal(as_tensor(shown(ax_small), 2, 2), block_sums)
    assert block_sums.abs().sum() > 0


def test_upsample_and_sumpool_copies_each_pixel():
    animation = animations.upsample_and_sumpool(size=2, scale=3)
    animation._func(3)              # draw the last frame of the forward half (FuncAnimation's)
    ax_small, ax_big = animation.figure.axes
    image = as_tensor(shown(ax_small), 2, 2)
    upsampled = image.repeat_interleave(3, 0).repeat_interleave(3, 1)
    assert torch.equal(as_tensor(shown(ax_big), 6, 6), upsampled)


def test_fused_phases_equal_upsampling_then_convolution():
    animation = animations.fused_phases(size=1)
    assert frame_count(animation) == 4
    render(animation)
    ax_in, ax_weights, _, ax_out = animation.figure.axes
    image = as_tensor(shown(ax_in), 1, 1, 1, 1)
    weights = as_tensor(shown(ax_weights), 3, 3)
    upsampled = F.interpolate(image[None, None], scale_factor=2, mode="nearest")
    expected = F.conv2d(upsampled, weights[None, None], padding=1)[0, 0]
    assert torch.equal(as_tensor(shown(ax_out), 2, 2), expected)


def test_phase_kernels_are_the_packages():
    weights = [[1, -2, 0], [2, 1, -1], [0, 3, 1]]
    ours = animations.phase_kernels(weights)
    packaged = collapse_kernel(torch.tensor(weights, dtype=torch.float64)[None, None])
    for k, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        assert packaged[k, 0].tolist() == ours[a, b]


def test_as_html_closes_the_figure():
    animation = animations.unfold_columns(size=2, kernel=2)
    number = animation.figure.number
    html = animations.as_html(animation).data
    assert "new Animation(frames" in html and "loop_checked" not in html
    assert re.search(r'value="loop"[^>]*\n?\s*checked', html)
    assert not plt.fignum_exists(number)
