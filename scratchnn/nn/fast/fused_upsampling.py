"""The fused upsampling: nearest x2 upsampling then a 3x3, padding-1 convolution, computed on
the small map (chapter 8).

Output pixel (2i+a, 2j+b) of the upsampled-then-convolved map depends only on the 2x2 window of
the small map at (i+a, j+b) (padded by one): the 3x3 kernel read over repeated pixels adds up to
one 2x2 kernel per output *phase* (a, b). The four phases are one 2x2 convolution with 4O output
channels, on shifted rows; no upsampled map is ever stored.
"""
from .shifted_rows import convolve_rows, convolve_rows_backward, padded_rows

# scale factor, kernel size, stride, padding and dilation of the denoiser's upsampling blocks
FUSED_SETTING = ((2, 2), (3, 3), (1, 1), (1, 1), (1, 1))

# Row (a, t) of COLLAPSE: the kernel rows that add up to row t of the 2-row kernel of phase a.
COLLAPSE = ((1, 0, 0), (0, 1, 1), (1, 1, 0), (0, 0, 1))
PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


def both_sides(matrix, kernels):
    """``matrix @ K @ matrix^T`` for every k x k kernel K of (O, C, k, k).

    The kernel axes go first, so that each product is one small matrix times a wide one (a
    batch of O*C tiny products would spend its time on the batch, not on the sums).
    """
    o, c, k, _ = kernels.shape
    m = matrix.shape[0]
    wide = kernels.permute(2, 3, 0, 1).reshape(k, -1)                 # rows r; columns (s, o, c)
    wide = matrix.matmul(wide).reshape(m, k, -1).transpose(0, 1).reshape(k, -1)  # rows s: M K
    both = matrix.matmul(wide).reshape(m, m, o, c)                      # (s', r', o, c)
    return both.permute(2, 3, 1, 0)


def collapse_kernel(weight):
    """The 2x2 kernels of the four output phases (a, b), as one (4O, C, 2, 2) weight: M w M^T.

    Output row 2i+a of the upsampled-then-convolved map reads small rows (i-1, i, i) for a = 0 and
    (i, i, i+1) for a = 1, so taps on the same row add up: (w0, w1+w2) on rows (i-1, i) and
    (w0+w1, w2) on rows (i, i+1). M = ``COLLAPSE`` does this to the rows, M^T to the columns.
    Output channel (a, b, o) of the result is phase (a, b) of output channel o.
    """
    o, c = weight.shape[:2]
    kernels = both_sides(weight.new_tensor(COLLAPSE), weight)             # (O, C, 2a+t, 2b+u)
    kernels = kernels.reshape(o, c, 2, 2, 2, 2).permute(2, 4, 0, 1, 3, 5)  # (a, b, O, C, t, u)
    return kernels.reshape(4 * o, c, 2, 2)


def expand_kernel_grad(grad, weight_shape):
    """The transpose of ``collapse_kernel``: K = M w M^T is linear in w, so d w = M^T dK M."""
    o, c = weight_shape[:2]
    grad = grad.reshape(2, 2, o, c, 2, 2).permute(2, 3, 0, 4, 1, 5).reshape(o, c, 4, 4)
    return both_sides(grad.new_tensor(COLLAPSE).t(), grad)


def interleave_phases(phases):
    """(N, 4O, H+1, W+1) phases on every 2x2 window of the padded small map -> (N, O, 2H, 2W).

    Output pixel (2i+a, 2j+b) is phase (a, b) on the window at (i+a, j+b). The result is written
    channels-last, (N, H, a, W, b, O), where each phase is one strided block.
    """
    n, _, height, width = phases.shape
    height, width = height - 1, width - 1
    phases = phases.permute(0, 2, 3, 1).reshape(n, height + 1, width + 1, 4, -1)
    out = phases.new_empty(n, height, 2, width, 2, phases.shape[-1])
    for k, (a, b) in enumerate(PHASES):
        out[:, :, a, :, b] = phases[:, a:a + height, b:b + width, k]
    return out.reshape(n, 2 * height, 2 * width, -1).permute(0, 3, 1, 2)


def split_phases(grad, phases):
    """The transpose of ``interleave_phases``: (N, O, 2H, 2W) -> ``phases`` (N, 4O, H+1, W+1).

    Phase (a, b) fills the windows from (a, b) on; the one window row and column it does not
    reach (the last for a = 0, the first for a = 1) are zero. ``phases`` is a view to fill
    (``upsample_convolve_backward`` passes the pixels of the rows buffer that
    ``convolve_rows_backward`` reads, so the phases are written where they are needed).
    """
    n, o, height, width = grad.shape[0], grad.shape[1], grad.shape[2] // 2, grad.shape[3] // 2
    split = phases.permute(0, 2, 3, 1).unflatten(3, (4, o))            # (N, H+1, W+1, 4, O)
    blocks = grad.permute(0, 2, 3, 1).reshape(n, height, 2, width, 2, o)
    for k, (a, b) in enumerate(PHASES):
        split[:, a:a + height, b:b + width, k] = blocks[:, :, a, :, b]
        split[:, (1 - a) * height, :, k] = 0                 # the window row it does not reach
        split[:, :, (1 - b) * width, k] = 0                  # and the column
    return phases


def upsample_convolve(x, kernels, form=None, spares=None):
    """Nearest x2 upsampling then a 3x3 padding-1 convolution (no bias); also return the record
    of its shifted rows (``shifted_rows.RowsSaved``) for the backward pass.

    ``kernels`` is ``collapse_kernel(weight)``. One 2x2 convolution of ``x`` padded by one, with
    its 4O output channels, gives all four phases on the small map: 16 multiply-adds per small
    pixel and channel pair (plus the border row and column) instead of 36, and no upsampled map
    is ever stored. It runs on shifted rows, in ``form`` (None: the one chosen for the shapes),
    so there is no unfold copy either. ``spares``: the block's reusable buffers (``Spares``).
    """
    phases, rows = convolve_rows(x, kernels, None, (1, 1), (1, 1), form, spares)
    return interleave_phases(phases), rows


def upsample_convolve_backward(grad, rows, kernels, weight_shape, spares=None):
    """Gradients of ``upsample_convolve`` with respect to its input and its 3x3 weight: split the
    output gradient into its four phases, run the 2x2 convolution's backward, expand the kernel
    gradient back to 3x3. ``rows`` is the record that ``upsample_convolve`` returned."""
    layout = rows.layout
    spread, phases = padded_rows(layout, kernels.shape[0], layout.tail, layout.out_height,
                                 layout.out_width, grad, spares, "gradient rows")
    split_phases(grad, phases)                        # written straight into the rows buffer
    input_grad, kernel_grad = convolve_rows_backward(spread, rows, kernels)
    return input_grad, expand_kernel_grad(kernel_grad, weight_shape)
