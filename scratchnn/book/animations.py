"""Small matplotlib animations that show convolutions moving (chapters 3, 4, 5 and 8).

Every function returns a ``matplotlib.animation.FuncAnimation`` over small integer grids, drawn
frame by frame with the same few helpers: a cell is a square with its number, zero padding is a
hatched grey border, and what the current frame reads or writes is tinted. In a notebook, show
one with ``as_html(sliding_window())``; ``as_html`` also closes the figure, so that no static
copy of it is shown under the animation.

The numbers are computed here in plain Python, straight from the textbook formulas (torch is not
used), so that ``tests/test_animations.py`` can check what is drawn against PyTorch.
"""
import random

import matplotlib.pyplot as plt
from matplotlib.animation import FuncAnimation
from matplotlib.patches import Rectangle

from ..nn.conv import output_length

FIGSIZE, DPI, INTERVAL_MS = (8, 3), 80, 700
PADDING_COLOR, EMPTY_COLOR, READ_COLOR, WRITE_COLOR = "#eeeeee", "white", "#9ecae1", "#fdae6b"
READ_BEFORE_COLOR = "#cfe0f1"   # pixels an earlier window read: the never-read ones stay white
# One light colour per kernel tap or per phase, so that the eye can follow a value around.
TAP_COLORS = ["#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#fc9272", "#fdd0a2", "#c7e9c0",
              "#dadaeb", "#c6dbef"]


# --- numbers -------------------------------------------------------------------------------

def small_integers(rows, columns, low, high, seed):
    """A rows x columns grid (list of lists) of integers in [low, high], the same every time."""
    generator = random.Random(seed)
    return [[generator.randint(low, high) for _ in range(columns)] for _ in range(rows)]


def numbered(rows, columns, first=1):
    """The grid first, first + 1, ... in row-major order, like ``torch.arange(...).reshape``."""
    return [[first + r * columns + c for c in range(columns)] for r in range(rows)]


def pad(grid, padding):
    """``grid`` framed by ``padding`` rows and columns of zeros on every side."""
    width = len(grid[0]) + 2 * padding
    zeros = [[0] * width for _ in range(padding)]
    return zeros + [[0] * padding + row + [0] * padding for row in grid] + [r[:] for r in zeros]


def correlate(padded, kernel, stride, dilation, i, j):
    """Output (i, j) of a correlation: the sum of w[p][q] * padded[s i + d p][s j + d q]."""
    k = len(kernel)
    return sum(kernel[p][q] * padded[stride * i + dilation * p][stride * j + dilation * q]
               for p in range(k) for q in range(k))


# --- drawing -------------------------------------------------------------------------------

def new_figure(widths):
    """One row of axes, ``widths[k]`` cells wide each (see ``prepare``), in the common size."""
    fig, axes = plt.subplots(1, len(widths), figsize=FIGSIZE, dpi=DPI,
                             gridspec_kw={"width_ratios": widths})
    fig.subplots_adjust(left=0.01, right=0.99, top=0.8, bottom=0.02, wspace=0.12)
    return fig, axes


def panel_width(columns, labels=0.0):
    """The width of an axes, in cells, for a grid of ``columns`` with ``labels`` cells of
    row labels on its left (the argument of ``new_figure``)."""
    return columns + labels + 0.4


def prepare(ax, rows, columns, title, height, labels=0.0):
    """Clear ``ax`` for a grid of rows x columns unit cells, row 0 at the top.

    Every axes of a figure spans the same ``height`` (in cells, the tallest grid), so that cells
    are the same size in all of them; shorter grids are centred vertically.
    """
    ax.clear()
    extra = (height - rows) / 2
    ax.set_xlim(-labels - 0.3, columns + 0.1)
    ax.set_ylim(rows + extra + 0.1, -extra - 0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=9, pad=3)


def draw_cell(ax, row, column, value, color=EMPTY_COLOR, hatched=False, fontsize=9):
    """One square cell with its number (no number when ``value`` is None)."""
    ax.add_patch(Rectangle((column, row), 1, 1, facecolor=color, edgecolor="#888888",
                           lw=0.8, hatch="//" if hatched else None))
    if value is not None:
        ax.text(column + 0.5, row + 0.5, f"{value:g}", ha="center", va="center",
                fontsize=fontsize, color="#777777" if hatched else "black", gid="cell")


def draw_grid(ax, grid, colors=None, padding=0, hidden=(), top=0, left=0):
    """A grid of numbered cells; the outer ``padding`` rings are hatched zero padding.

    ``colors`` maps (row, column) to a fill colour; cells in ``hidden`` are drawn without their
    number; ``top`` and ``left`` move the grid down and right by that many cells.
    """
    colors = colors or {}
    rows, columns = len(grid), len(grid[0])
    for r in range(rows):
        for c in range(columns):
            in_padding = not (padding <= r < rows - padding and padding <= c < columns - padding)
            value = None if (r, c) in hidden else grid[r][c]
            color = colors.get((r, c), PADDING_COLOR if in_padding else EMPTY_COLOR)
            draw_cell(ax, top + r, left + c, value, color, hatched=in_padding)


def outline(ax, top, left, height, width, color="black", lw=2.5):
    """A thick frame around a block of cells."""
    ax.add_patch(Rectangle((left, top), width, height, fill=False, edgecolor=color, lw=lw))


def label_axes(ax, row_labels, column_labels):
    """Small index labels left of the rows and above the columns of a grid."""
    for r, text in enumerate(row_labels):
        ax.text(-0.1, r + 0.5, str(text), ha="right", va="center", fontsize=7, color="#555555")
    for c, text in enumerate(column_labels):
        ax.text(c + 0.5, -0.08, str(text), ha="center", va="bottom", fontsize=7,
                color="#555555")


def animate(fig, draw_frame, frames):
    """The animation of ``draw_frame(0), ..., draw_frame(frames - 1)`` on ``fig``.

    The figure is also kept as ``animation.figure`` (matplotlib keeps it only privately), so
    that ``as_html`` can close it.
    """
    animation = FuncAnimation(fig, draw_frame, frames=frames, interval=INTERVAL_MS)
    animation.figure = fig
    return animation


def as_html(animation):
    """The animation as HTML with play buttons and a slider, to show in a notebook.

    The figure is closed afterwards, so that Jupyter does not also show it as a still image.
    """
    from IPython.display import HTML

    html = animation.to_jshtml(default_mode="loop")
    plt.close(animation.figure)
    return HTML(html)


# --- the animations ------------------------------------------------------------------------

def tap_color(p, q, kernel):
    """The colour of tap (p, q) of a kernel x kernel kernel."""
    return TAP_COLORS[(p * kernel + q) % len(TAP_COLORS)]


def sliding_window(kernel=3, stride=2, padding=1, dilation=1, size=5):
    """The kernel's window sliding over a padded input, one output cell per frame.

    Left, the input framed by its hatched zero padding, with the window of the current output
    (i, j) outlined and its taps, the pixels it reads (``dilation`` apart), tinted in the colour
    of the kernel weight that multiplies them; pixels read by earlier windows stay pale blue, so
    rows and columns that no window reads remain white. Middle, the kernel. Right, the output
    filling up: cell (i, j) reads padded rows s*i + d*p and columns s*j + d*q (eq. ch3-conv).
    """
    image = small_integers(size, size, 0, 9, seed=3)
    weights = small_integers(kernel, kernel, -2, 2, seed=4)
    padded = pad(image, padding)
    out_size = output_length(size, kernel, stride, padding, dilation)
    output = [[correlate(padded, weights, stride, dilation, i, j) for j in range(out_size)]
              for i in range(out_size)]
    side, span = len(padded), dilation * (kernel - 1) + 1
    fig, (ax_in, ax_kernel, ax_out) = new_figure(
        [panel_width(side), panel_width(kernel), panel_width(out_size)])

    def taps(frame):
        """The padded pixels that output ``frame`` reads, with the colour of their tap."""
        i, j = divmod(frame, out_size)
        return {(stride * i + dilation * p, stride * j + dilation * q): tap_color(p, q, kernel)
                for p in range(kernel) for q in range(kernel)}

    def draw_frame(frame):
        i, j = divmod(frame, out_size)
        colors = {cell: READ_BEFORE_COLOR for earlier in range(frame) for cell in taps(earlier)}
        colors.update(taps(frame))
        prepare(ax_in, side, side, f"input {size}×{size}, padding {padding}", side)
        draw_grid(ax_in, padded, colors, padding)
        outline(ax_in, stride * i, stride * j, span, span)
        prepare(ax_kernel, kernel, kernel, f"kernel {kernel}×{kernel}", side)
        draw_grid(ax_kernel, weights, {(p, q): tap_color(p, q, kernel)
                                       for p in range(kernel) for q in range(kernel)})
        prepare(ax_out, out_size, out_size, f"output {out_size}×{out_size}", side)
        later = {divmod(f, out_size) for f in range(frame + 1, out_size ** 2)}
        draw_grid(ax_out, output, {(i, j): WRITE_COLOR}, hidden=later)
        outline(ax_out, i, j, 1, 1)
        fig.suptitle(f"stride {stride}, padding {padding}, dilation {dilation}: output ({i}, {j})"
                     f" = Σ w·x over the window at padded row {stride * i}, column {stride * j}"
                     f" = {output[i][j]}", fontsize=10)

    return animate(fig, draw_frame, out_size ** 2)


def unfold_columns(size=4, kernel=2, stride=1, padding=0, dilation=1, channels=1):
    """``unfold`` (im2col) filling its (C*kh*kw, L) matrix, one column per frame.

    Left, the input channels (numbered 1, 2, ... like chapter 3's image) with the current
    receptive field tinted, one colour per tap (p, q). Right, the column matrix: row (c, p, q)
    of column l holds the pixel that tap (p, q) reads in channel c for output position l, in
    the same colour; columns not reached yet are empty.
    """
    images = [numbered(size, size, first=1 + c * size * size) for c in range(channels)]
    padded = [pad(image, padding) for image in images]
    side = len(padded[0])
    out_size = output_length(size, kernel, stride, padding, dilation)
    positions = out_size * out_size
    taps = [(c, p, q) for c in range(channels) for p in range(kernel) for q in range(kernel)]
    matrix = [[padded[c][stride * (column // out_size) + dilation * p]
               [stride * (column % out_size) + dilation * q] for column in range(positions)]
              for c, p, q in taps]
    inputs_wide, height = channels * (side + 1) - 1, max(side, len(taps))
    fig, (ax_in, ax_cols) = new_figure([panel_width(inputs_wide),
                                        panel_width(positions, labels=1.6)])

    def draw_frame(frame):
        i, j = divmod(frame, out_size)
        field = {(stride * i + dilation * p, stride * j + dilation * q): tap_color(p, q, kernel)
                 for p in range(kernel) for q in range(kernel)}
        title = f"input {size}×{size}" + (f", {channels} channels" if channels > 1 else "")
        prepare(ax_in, side, inputs_wide, title + (f", padding {padding}" if padding else ""),
                height)
        for c in range(channels):
            draw_grid(ax_in, padded[c], field, padding, left=c * (side + 1))
        prepare(ax_cols, len(taps), positions, f"columns: C·kh·kw = {len(taps)} rows, "
                f"L = {positions}", height, labels=1.6)
        colors = {(row, frame): tap_color(p, q, kernel) for row, (_, p, q) in enumerate(taps)}
        later = {(row, column) for row in range(len(taps))
                 for column in range(frame + 1, positions)}
        draw_grid(ax_cols, matrix, colors, hidden=later)
        outline(ax_cols, 0, frame, len(taps), 1)
        label_axes(ax_cols, [f"({c},{p},{q})" for c, p, q in taps], range(positions))
        fig.suptitle(f"unfold: the window of output ({i}, {j}) becomes column "
                     f"l = {i}·{out_size} + {j} = {frame}", fontsize=10)

    return animate(fig, draw_frame, positions)


OVERLAP_COLORS = [EMPTY_COLOR, "#deebf7", "#9ecae1", "#6baed6", "#4292c6"]


def scattered_gradient(grad_out, weights, side, stride, dilation, frames):
    """The padded input's gradient after the first ``frames`` output-gradient cells scattered.

    Cell (i, j) adds g[i][j] * w[p][q] to padded pixel (s*i + d*p, s*j + d*q): what ``fold``
    does with column l of W^T G. Also returns how many blocks have landed on each pixel.
    """
    sums = [[0] * side for _ in range(side)]
    counts = [[0] * side for _ in range(side)]
    out_size, kernel = len(grad_out), len(weights)
    for frame in range(frames):
        i, j = divmod(frame, out_size)
        for p in range(kernel):
            for q in range(kernel):
                row, column = stride * i + dilation * p, stride * j + dilation * q
                sums[row][column] += grad_out[i][j] * weights[p][q]
                counts[row][column] += 1
    return sums, counts


def backward_flow(size=5, kernel=3, stride=2, padding=0, dilation=1):
    """The output gradient flowing back to the input, one output-gradient cell per frame.

    Each cell g[i, j] multiplies the kernel w, and the block g[i, j] * w (one column of
    W^T G) is added where the forward window of output (i, j) lay: ``fold`` adds overlapping
    blocks, so the running sums grow where windows overlap (darker blue: more blocks). Read from
    one input pixel instead, the same sum is a full correlation of the stride-dilated g with
    the kernel turned by 180 degrees (chapter 4). What lands on hatched padding is dropped.
    """
    weights = numbered(kernel, kernel)
    out_size = output_length(size, kernel, stride, padding, dilation)
    grad_out = numbered(out_size, out_size)
    side, span = size + 2 * padding, dilation * (kernel - 1) + 1
    fig, (ax_g, ax_block, ax_in) = new_figure(
        [panel_width(out_size), panel_width(kernel), panel_width(side)])

    def draw_frame(frame):
        i, j = divmod(frame, out_size)
        value = grad_out[i][j]
        sums, counts = scattered_gradient(grad_out, weights, side, stride, dilation, frame + 1)
        prepare(ax_g, out_size, out_size, "output gradient g", side)
        draw_grid(ax_g, grad_out, {(i, j): WRITE_COLOR})
        outline(ax_g, i, j, 1, 1, color="#e6550d")
        prepare(ax_block, kernel, kernel, f"g[{i},{j}]·w, w = {weights}", side)
        draw_grid(ax_block, [[value * w for w in row] for row in weights],
                  {(p, q): WRITE_COLOR for p in range(kernel) for q in range(kernel)})
        title = "input gradient" + (", padded (hatched: dropped)" if padding else "")
        prepare(ax_in, side, side, title, side)
        colors = {(r, c): OVERLAP_COLORS[min(counts[r][c], len(OVERLAP_COLORS) - 1)]
                  for r in range(side) for c in range(side) if counts[r][c]}
        draw_grid(ax_in, sums, colors, padding)
        outline(ax_in, stride * i, stride * j, span, span, color="#e6550d")
        fig.suptitle(f"g[{i},{j}] = {value} adds {value}·w to the block at rows "
                     f"{stride * i}–{stride * i + span - 1}, columns "
                     f"{stride * j}–{stride * j + span - 1}; overlaps add up", fontsize=10)

    return animate(fig, draw_frame, out_size * out_size)


def signed(value):
    """A number for a printed sum: negative ones in parentheses."""
    return f"({value})" if value < 0 else str(value)


def upsample_and_sumpool(size=3, scale=2):
    """Nearest upsampling, then its backward pass: sum-pooling.

    First half of the frames: each pixel of the small map is copied to a scale x scale block of
    the upsampled map. Second half: the gradient flows back, right to left, and each pixel's
    gradient is the sum of its block's gradients (a stride-s convolution with a kernel of ones).
    """
    image = small_integers(size, size, 0, 9, seed=5)
    big = size * scale
    upsampled = [[image[r // scale][c // scale] for c in range(big)] for r in range(big)]
    grad_big = small_integers(big, big, -3, 3, seed=1)
    grad_small = [[sum(grad_big[scale * i + a][scale * j + b]
                       for a in range(scale) for b in range(scale)) for j in range(size)]
                  for i in range(size)]
    pixels = size * size
    fig, (ax_small, ax_big) = new_figure([panel_width(size), panel_width(big)])

    def draw_frame(frame):
        backward, (i, j) = frame >= pixels, divmod(frame % pixels, size)
        block = [(scale * i + a, scale * j + b) for a in range(scale) for b in range(scale)]
        done = {divmod(f, size) for f in range(frame % pixels + 1)}
        if not backward:
            prepare(ax_small, size, size, "small map x", big)
            draw_grid(ax_small, image, {(i, j): READ_COLOR})
            prepare(ax_big, big, big, f"nearest ×{scale}", big)
            hidden = {(r, c) for r in range(big) for c in range(big)
                      if (r // scale, c // scale) not in done}
            draw_grid(ax_big, upsampled, dict.fromkeys(block, WRITE_COLOR), hidden=hidden)
            text = (f"forward: pixel ({i}, {j}) = {image[i][j]} is copied to a "
                    f"{scale}×{scale} block")
        else:
            prepare(ax_small, size, size, "gradient of x: block sums", big)
            hidden = {(r, c) for r in range(size) for c in range(size) if (r, c) not in done}
            draw_grid(ax_small, grad_small, {(i, j): WRITE_COLOR}, hidden=hidden)
            prepare(ax_big, big, big, "gradient of the upsampled map", big)
            draw_grid(ax_big, grad_big, dict.fromkeys(block, READ_COLOR))
            terms = " + ".join(signed(grad_big[r][c]) for r, c in block)
            text = (f"backward (sum-pooling): gradient of pixel ({i}, {j}) = {terms} = "
                    f"{grad_small[i][j]}")
        outline(ax_small, i, j, 1, 1, color="#e6550d")
        outline(ax_big, scale * i, scale * j, scale, scale, color="#e6550d")
        fig.suptitle(text, fontsize=10)

    return animate(fig, draw_frame, 2 * pixels)


def phase_kernels(weights):
    """The four 2x2 kernels of nearest x2 + 3x3 convolution, {(a, b): kernel}: M w M^T.

    ``COLLAPSE`` (M) is the package's table of which 3x3 kernel rows add up into each row of a
    2x2 phase kernel (chapter 8): this is ``scratchnn.nn.fast.fused_upsampling.collapse_kernel``
    in plain loops.
    """
    from ..nn.fast.fused_upsampling import COLLAPSE, PHASES

    def entry(a, b, t, u):
        return sum(COLLAPSE[2 * a + t][r] * COLLAPSE[2 * b + u][v] * weights[r][v]
                   for r in range(3) for v in range(3))

    return {(a, b): [[entry(a, b, t, u) for u in range(2)] for t in range(2)]
            for a, b in PHASES}


def fused_phases(size=2):
    """Nearest x2 upsampling + 3x3 convolution (padding 1) as four 2x2 kernels on the small map.

    Output pixel (2i+a, 2j+b) of the big map is phase (a, b): the 2x2 kernel of that phase on
    the 2x2 window at (i+a, j+b) of the small map padded by one. One frame per output pixel:
    the window (left), the 3x3 kernel, the four phase kernels (sums of 3x3 taps) with the one
    in use outlined, and the output filling up in the phase's colour. No upsampled map is built.
    """
    image = small_integers(size, size, 0, 9, seed=7)
    weights = small_integers(3, 3, -2, 2, seed=8)
    phases = phase_kernels(weights)
    padded, big = pad(image, 1), 2 * size
    colors = {(a, b): TAP_COLORS[2 * a + b] for a, b in phases}

    def output_pixel(a, b, i, j):
        return sum(phases[a, b][t][u] * padded[i + a + t][j + b + u]
                   for t in range(2) for u in range(2))

    output = [[output_pixel(r % 2, c % 2, r // 2, c // 2) for c in range(big)]
              for r in range(big)]
    height = max(big, 5)
    fig, (ax_in, ax_w, ax_phases, ax_out) = new_figure(
        [panel_width(size + 2), panel_width(3), panel_width(5), panel_width(big)])

    def draw_frame(frame):
        (i, a), (j, b) = divmod(frame // big, 2), divmod(frame % big, 2)
        window = {(i + a + t, j + b + u): colors[a, b] for t in range(2) for u in range(2)}
        prepare(ax_in, size + 2, size + 2, "small map, padded", height)
        draw_grid(ax_in, padded, window, padding=1)
        outline(ax_in, i + a, j + b, 2, 2)
        prepare(ax_w, 3, 3, "3×3 kernel w", height)
        draw_grid(ax_w, weights)
        prepare(ax_phases, 5, 5, "phase kernels (a, b)", height)
        for (pa, pb), kernel in phases.items():
            draw_grid(ax_phases, kernel, {(t, u): colors[pa, pb] for t in range(2)
                                          for u in range(2)}, top=3 * pa, left=3 * pb)
            ax_phases.text(3 * pb + 1, 3 * pa - 0.05, f"({pa}, {pb})", ha="center", va="bottom",
                           fontsize=7, color="#555555")
        outline(ax_phases, 3 * a, 3 * b, 2, 2)
        prepare(ax_out, big, big, f"output {big}×{big}", height)
        shown = {divmod(f, big) for f in range(frame + 1)}
        draw_grid(ax_out, output, {cell: colors[cell[0] % 2, cell[1] % 2] for cell in shown},
                  hidden={(r, c) for r in range(big) for c in range(big)} - shown)
        outline(ax_out, 2 * i + a, 2 * j + b, 1, 1)
        value = output[2 * i + a][2 * j + b]
        fig.suptitle(f"output (2·{i}+{a}, 2·{j}+{b}) uses phase ({a}, {b}) on the window at "
                     f"({i + a}, {j + b}) of the padded small map  =  {value}", fontsize=10)

    return animate(fig, draw_frame, big * big)
