"""Shifted rows: stride-1 convolutions as matrix products on channels-last rows (chapter 8).

Any kernel, padding and dilation, and no unfold copy. Store the input channels-last, one row of C
numbers per pixel, with zero rows for the padding: row ``r`` of the flat (R, C) buffer is one
pixel. A pixel's neighbour (i, j) pixels further on is then always ``i * row_width + j`` rows
further in the buffer, so the input under kernel tap (i, j), for *every* output pixel at once, is
one contiguous slice of rows. The convolution is a
sum of kh*kw matrix products, (rows slice) @ (C, O) tap matrix, and each backward pass is the
same kind of sum: no ``unfold`` copy nine times the size of the input is needed.

To keep the zero rows few, neighbouring images and neighbouring pixel rows share their padding:
the zero columns at the end of one pixel row are also the zero columns before the next, and the
zero rows under one image are those above the next. A slice also covers positions that are not
output pixels (inside the padding); those results are computed and then ignored.

The same products can be grouped three ways, the ``ROWS_FORMS`` that ``rows_form`` chooses
between: one per tap; for few output channels (the denoiser's last layer, 3 colours), where each
would be a thin sliver that runs slowly, one *wide* product with all the taps side by side and
then shifted sums; and for small maps, where many positions lie in the padding, the taps of each
output pixel *gathered* into one row (an unfold, on rows, while it is small) and one product.
"""
from dataclasses import dataclass

import torch

from .long_sums import long_sum_product

ROWS_FORMS = ("per tap", "wide", "gathered")
WIDE_MAX_OUT_CHANNELS = 12        # wide wins at 3 and loses at 48 outputs (bench_conv.py --forms);
                                  # 12 covers the course network's last block, not yet swept
GATHER_MAX_ENTRIES = 2 ** 19      # picks only the U-Net's 4x4 level at batch 32 (measured there)
PIECE_ROWS = 2 ** 15              # 6 MB of a 48-channel result: a quarter faster on a 512x512
PIECES_FROM_ROWS = 2 ** 17        # image, no certain gain at 66-70k positions (bench_conv.py
                                  # --pieces, forward only); 2**17 is a choice between, not swept


@dataclass(frozen=True)
class RowsLayout:
    """Where everything lies in the flat channels-last buffer of a padded batch.

    ``row_width`` pixels per stored image row (W plus the shared zero columns), ``image_rows``
    rows per image (H plus the shared zero rows), ``lead`` zero pixels before the first image.
    The output pixel (n, y, x) is computed at position ``n * image_size + y * row_width + x``
    and reads tap (i, j) of the ``kernel`` at row ``position + offsets[i * kw + j]`` of the
    buffer, where ``offsets[i * kw + j] = i * steps[0] + j * steps[1]``.
    """
    batch: int
    height: int
    width: int
    out_height: int
    out_width: int
    image_rows: int
    row_width: int
    lead: int
    kernel: tuple
    steps: tuple
    offsets: tuple

    @property
    def image_size(self):
        return self.image_rows * self.row_width

    @property
    def positions(self):
        """How many positions each tap's product computes: every output pixel is among them."""
        return self.batch * self.image_size

    @property
    def tail(self):
        """Zero rows after the last image, so that the last position's last tap is in the buffer
        (usually ``lead + tail`` is the largest offset; none when the padding reaches further)."""
        return max(0, self.offsets[-1] - self.lead)

    @property
    def total(self):
        """Length of the buffer: the lead, every image with its shared padding, the tail."""
        return self.lead + self.positions + self.tail


def rows_layout(input_shape, kernel_size, padding, dilation):
    """The ``RowsLayout`` of a stride-1 convolution of an (N, C, H, W) input.

    The shared gap after each image row must hold the padding on both sides (p zeros: the right
    padding of one row is the left padding of the next) and must leave room for all Wo = W + 2p
    - reach output columns in one stored row; the same goes for the gap under each image.
    """
    n, _, height, width = input_shape
    (kh, kw), (ph, pw), (dh, dw) = kernel_size, padding, dilation
    reach_h, reach_w = dh * (kh - 1), dw * (kw - 1)
    row_width = width + max(pw, 2 * pw - reach_w)
    image_rows = height + max(ph, 2 * ph - reach_h)
    steps = (dh * row_width, dw)
    offsets = tuple(i * steps[0] + j * steps[1] for i in range(kh) for j in range(kw))
    return RowsLayout(n, height, width, height + 2 * ph - reach_h, width + 2 * pw - reach_w,
                      image_rows, row_width, ph * row_width + pw, (kh, kw), steps, offsets)


def images_of(buffer, start, layout, height, width):
    """The pixels of a rows buffer whose first image starts at row ``start``: the (N, C, height,
    width) view of the top-left height x width pixels of every stored image (no copy)."""
    images = buffer[start:start + layout.positions]
    images = images.view(layout.batch, layout.image_rows, layout.row_width, buffer.shape[1])
    return images[:, :height, :width].permute(0, 3, 1, 2)


def padded_rows(layout, channels, start, height, width, like, spares=None, role=None):
    """A (total, channels) buffer whose rows hold zeros everywhere except the height x width
    pixels of every image stored from row ``start``; those are returned as a view to fill.
    Zeroing only the padding saves a pass over the whole buffer.

    With ``spares`` (the layer's ``Spares``), the buffer kept under ``role`` is reused when it
    was made for the same layout: only its pixels were ever written, so its padding is zero.
    """
    def make():
        buffer = like.new_empty(layout.total, channels)
        buffer[:start].zero_()
        buffer[start + layout.positions:].zero_()
        images = buffer[start:start + layout.positions]
        images = images.view(layout.batch, layout.image_rows, layout.row_width, channels)
        images[:, height:].zero_()                    # the zero rows shared under each image
        images[:, :height, width:].zero_()            # the zero columns after each pixel row
        return buffer

    made_for = (layout, channels, start, height, width, like.dtype, like.device)
    buffer = make() if spares is None else spares.take(role, made_for, make)
    return buffer, images_of(buffer, start, layout, height, width)


class Spares:
    """The padded buffers that one layer keeps from a call to the next (chapter 8).

    A training step after the first meets the same shapes again, and a padded buffer made for
    one batch serves the next as it is: its padding is still zero. Reusing it saves the
    allocation (for a large buffer, fresh memory that the operating system hands over page by
    page, each page zeroed on first touch) and the passes that zero its padding. One buffer
    per role (the input's rows, the output gradient's); a batch of another shape replaces it.

    The buffers are copies, never a layer's output; but the layer's ``saved`` record holds the
    input rows, so only the *latest* forward pass's record is valid: the next forward pass of
    the same shape overwrites them, as it replaces the record. (A copy of the layer made with
    ``copy.copy`` would share its spares; ``copy.deepcopy`` does not.)
    """

    def __init__(self):
        self.kept = {}          # role -> (what the buffer was made for, the buffer)

    def take(self, role, made_for, make):
        """The buffer kept under ``role`` if it was made for ``made_for``, else ``make()``'s
        (the old buffer is let go first, so that the two are not held at once)."""
        if role not in self.kept or self.kept[role][0] != made_for:
            self.kept.pop(role, None)
            self.kept[role] = (made_for, make())
        return self.kept[role][1]


def to_rows(x, layout, spares=None):
    """(N, C, H, W) -> the (total, C) channels-last buffer, zeros in the shared padding."""
    rows, pixels = padded_rows(layout, x.shape[1], layout.lead, layout.height, layout.width, x,
                               spares, "input rows")
    pixels.copy_(x)
    return rows


def output_pixels(out, layout):
    """The output pixels among the computed positions, as an (N, O, Ho, Wo) view (no copy).

    The view keeps the channels-last memory; the next block's ``to_rows`` copies it quickly.
    """
    return images_of(out, 0, layout, layout.out_height, layout.out_width)


def stacked_taps(weight):
    """The weight (O, C, kh, kw) as kh*kw tap matrices (C, O), stacked: (kh*kw, C, O).

    Copied to contiguous memory once here: a tap that is a strided view of the weight would be
    copied again by every matrix product that uses it.
    """
    o, c, kh, kw = weight.shape
    return weight.permute(2, 3, 1, 0).reshape(kh * kw, c, o).contiguous()


@dataclass(frozen=True)
class RowsSaved:
    """What ``convolve_rows`` keeps for ``convolve_rows_backward``: the form it ran, the layout,
    and the rows (in the gathered form, the gathered taps: its weight gradient is one product
    with them)."""
    form: str
    layout: RowsLayout
    buffer: torch.Tensor


def convolve_rows(x, weight, bias, padding, dilation, form=None, spares=None):
    """Stride-1 cross-correlation of ``x`` with ``weight`` plus ``bias``.

    out[r] = bias + sum over taps t of rows[r + offsets[t]] @ tap_t, organised in ``form``, one
    of ``ROWS_FORMS`` (None: the one ``rows_form`` chooses for these shapes). Returns the output
    and the ``RowsSaved`` record that the backward pass reads. ``spares``: see ``Spares``.
    """
    o, c, kh, kw = weight.shape
    layout = rows_layout(x.shape, (kh, kw), padding, dilation)
    form = form or rows_form(c, o, layout)
    rows = to_rows(x, layout, spares)
    taps = stacked_taps(weight)
    if form == "wide":
        return wide_forward(rows, taps, bias, layout), RowsSaved(form, layout, rows)
    if form == "gathered":
        gathered = gather_taps(rows, layout)
        return gathered_forward(gathered, taps, bias, layout), RowsSaved(form, layout, gathered)
    return taps_forward(rows, taps, bias, layout), RowsSaved(form, layout, rows)


def rows_form(in_channels, out_channels, layout):
    """Which of three ways to organise the products to use (chapter 8 and its appendix say
    which shapes were measured and which thresholds are choices between them):

    * ``"wide"`` for few output channels: one product with every tap side by side, then shifted
      sums of its thin results;
    * ``"gathered"`` for small maps: what the taps of each output pixel read, copied side by
      side (the unfold of chapter 3, on rows), then one product; while the copy stays small,
      one long product beats kh*kw short ones, and the positions that are not output pixels
      (9 of 25 per image on a 4x4 map) are left out;
    * ``"per tap"`` otherwise: one product per tap, on slices of the rows, with no copy at all.
    """
    if out_channels <= WIDE_MAX_OUT_CHANNELS:
        return "wide"
    pixels = layout.batch * layout.out_height * layout.out_width
    if pixels * len(layout.offsets) * in_channels <= GATHER_MAX_ENTRIES:
        return "gathered"
    return "per tap"


def pieces(count):
    """(start, stop) of the consecutive pieces that a sum of shifted products is computed in.

    Each ``addmm_`` reads and writes the whole (positions, channels) result, so a sum of kh*kw
    products passes over it kh*kw times. While it fits in the processor's caches that costs
    little; for a large image (one 512 x 512 picture: 50 MB per 48 channels) every pass likely
    goes to main memory. Then the positions are cut into pieces of ``PIECE_ROWS``, and all the
    taps run on one piece while it stays in the cache.
    """
    step = PIECE_ROWS if count >= PIECES_FROM_ROWS else max(count, 1)
    return [(start, min(start + step, count)) for start in range(0, count, step)]


def add_shifted_products(out, rows, starts, matrices, bias=None):
    """out[p] = bias + sum over t of rows[starts[t] + p] @ matrices[t], for every row p of
    ``out`` (an empty buffer): the sum that both the forward pass and the input gradient
    compute, piece by piece.

    With ``bias`` (O numbers) each piece is first set to the bias, just before its products,
    while it is in the cache: on a large image that saves a pass over the whole result in
    memory. Without, the first product replaces what the piece held (``beta=0``: the leftovers
    of an empty buffer, even NaN, are ignored), which saves a pass filling it with zeros.
    """
    for start, stop in pieces(out.shape[0]):
        piece = out[start:stop]
        if bias is not None:
            piece.copy_(bias.expand_as(piece))
        for index, (shift, matrix) in enumerate(zip(starts, matrices)):
            beta = 0 if bias is None and index == 0 else 1
            piece.addmm_(rows[shift + start:shift + stop], matrix, beta=beta)
    return out


def taps_forward(rows, taps, bias, layout):
    """One ``addmm_`` per tap into the (positions, O) result, which starts as the bias; returns
    its output pixels."""
    out = rows.new_empty(layout.positions, taps.shape[2])
    add_shifted_products(out, rows, layout.offsets, taps, bias)
    return output_pixels(out, layout)


def wide_forward(rows, taps, bias, layout):
    """All k taps in one product, rows @ [tap_0 ... tap_k-1] (total, k*O); then output position r
    adds up tap t's columns of row r + offsets[t]: thin shifted sums instead of thin products.
    Returns the output pixels."""
    m, o = layout.positions, taps.shape[2]
    every_tap = rows.matmul(taps.permute(1, 0, 2).reshape(rows.shape[1], -1))
    out = every_tap[layout.offsets[0]:layout.offsets[0] + m, :o].clone()
    if bias is not None:
        out += bias
    for t, offset in enumerate(layout.offsets[1:], start=1):
        out += every_tap[offset:offset + m, t * o:(t + 1) * o]
    return output_pixels(out, layout)


def gather_taps(rows, layout):
    """The unfold of chapter 3, on rows: the (N*Ho*Wo, kh*kw*C) matrix whose row for output pixel
    (n, y, x) holds, side by side, the kh*kw rows of the buffer that its taps read.

    Those rows are evenly spaced in the buffer: the next image, stored row, pixel, kernel row or
    kernel column is always the same number of rows further on. So the matrix is a strided view
    of the buffer (``as_strided``, whose rows overlap: nothing is copied yet), and ``reshape``
    copies it out in one pass.
    """
    c, (kh, kw), (down, across) = rows.shape[1], layout.kernel, layout.steps
    sizes = (layout.batch, layout.out_height, layout.out_width, kh, kw, c)
    strides = (layout.image_size * c, layout.row_width * c, c, down * c, across * c, 1)
    view = rows.as_strided(sizes, strides, rows.storage_offset())
    return view.reshape(-1, kh * kw * c)


def scatter_taps(gathered, layout, channels):
    """The transpose of ``gather_taps`` (chapter 4's fold, on rows): each tap's columns are added
    back to the rows that the tap read, in a zero buffer as long as the input's."""
    buffer = gathered.new_zeros(layout.total, channels)
    per_tap = gathered.view(layout.batch, layout.out_height, layout.out_width, -1, channels)
    for t, offset in enumerate(layout.offsets):
        read = images_of(buffer, offset, layout, layout.out_height, layout.out_width)
        read.add_(per_tap[:, :, :, t].permute(0, 3, 1, 2))
    return buffer


def gathered_forward(gathered, taps, bias, layout):
    """One product of the gathered taps with all the tap matrices stacked, (kh*kw*C, O): one row
    per output pixel, returned as the (N, O, Ho, Wo) view."""
    matrix = taps.reshape(-1, taps.shape[2])
    out = gathered.matmul(matrix) if bias is None else bias.addmm(gathered, matrix)
    return out.view(layout.batch, layout.out_height, layout.out_width, -1).permute(0, 3, 1, 2)


def spread_gradient(grad, layout, spares=None):
    """The output gradient (N, O, Ho, Wo) in the rows layout, ready for ``convolve_rows_backward``.

    The gradient of position r lies at row ``tail + r``, with zeros at the positions that are not
    output pixels and in ``tail`` rows before and ``lead`` rows after (so the buffer is as long as
    the input's). Then the input row ``lead + p`` receives from tap t the gradient at row
    ``tail + lead - offsets[t] + p``: the input gradient is a convolution of this buffer with the
    taps in reverse order, chapter 4's full correlation with the flipped kernel.
    """
    spread, pixels = padded_rows(layout, grad.shape[1], layout.tail, layout.out_height,
                                 layout.out_width, grad, spares, "gradient rows")
    pixels.copy_(grad)
    return spread


def convolve_rows_backward(spread, saved, weight):
    """Gradients of ``convolve_rows`` with respect to its input and its weight (not the bias).

    ``spread`` is the output gradient laid out by ``spread_gradient``, ``saved`` the record that
    ``convolve_rows`` returned with the output. For each tap t at offset s, with G the gradient
    rows and G_t the slice that tap t sends back to the input rows:
    d tap_t = rows[s : s + m]^T @ G and d input rows += G_t @ tap_t^T, organised in the form
    that the forward pass ran (``saved.form``).
    """
    o, c, kh, kw = weight.shape
    layout, taps = saved.layout, stacked_taps(weight)
    backward = {"wide": wide_backward, "gathered": gathered_backward, "per tap": taps_backward}
    input_rows, tap_grads = backward[saved.form](spread, saved.buffer, taps, layout)
    input_grad = images_of(input_rows, 0, layout, layout.height, layout.width)
    return input_grad, tap_grads.reshape(kh, kw, c, o).permute(3, 2, 0, 1)


def sent_back(spread, layout, offset):
    """The gradient that the tap at ``offset`` sends to the input rows lead ... lead + m - 1."""
    start = sent_back_start(layout, offset)
    return spread[start:start + layout.positions]


def sent_back_start(layout, offset):
    """The row of the spread gradient where ``sent_back`` starts: the gradient of output position
    p lies at row tail + p, and input row lead + p receives it from output p + lead - offset."""
    return layout.tail + layout.lead - offset


def taps_backward(spread, rows, taps, layout):
    """Both gradients, one product per tap: d tap_t = rows[s : s + m]^T @ G, and the input
    gradient adds up, for each tap, the slice it sends back (``sent_back``, from row
    ``sent_back_start``) times its matrix transposed, with ``add_shifted_products`` as forward.
    Returns the input gradient on the positions (row p is input row lead + p) and the (k*C, O)
    tap gradients."""
    m, offsets = layout.positions, layout.offsets
    grad_rows = spread[layout.tail:layout.tail + m]
    tap_grads = torch.cat([long_sum_product(rows[s:s + m], grad_rows) for s in offsets])
    starts = [sent_back_start(layout, offset) for offset in offsets]
    input_rows = add_shifted_products(spread.new_empty(m, taps.shape[1]), spread, starts,
                                      taps.transpose(1, 2))
    return input_rows, tap_grads


def wide_backward(spread, rows, taps, layout):
    """The same two gradients for few output channels: the thin slices that every tap sends back
    are placed side by side, (m, k*O), once; then each gradient is a single wide product."""
    k, c, o = taps.shape
    sent = torch.cat([sent_back(spread, layout, s) for s in layout.offsets], dim=1)
    input_rows = sent.matmul(taps.permute(0, 2, 1).reshape(k * o, c))
    pixels = rows[layout.lead:layout.lead + layout.positions]
    tap_grads = long_sum_product(pixels, sent).reshape(c, k, o).transpose(0, 1)
    return input_rows, tap_grads


def gathered_backward(spread, gathered, taps, layout):
    """The two gradients in the gathered form: one product each, on the output pixels only."""
    k, c, o = taps.shape
    pixels = images_of(spread, layout.tail, layout, layout.out_height, layout.out_width)
    grad_rows = pixels.permute(0, 2, 3, 1).reshape(-1, o)            # (N*Ho*Wo, O), a copy
    tap_grads = long_sum_product(gathered, grad_rows)                # (kh*kw*C, O)
    sent = grad_rows.matmul(taps.reshape(k * c, o).t())              # d gathered
    input_rows = scatter_taps(sent, layout, c)
    return input_rows[layout.lead:layout.lead + layout.positions], tap_grads
