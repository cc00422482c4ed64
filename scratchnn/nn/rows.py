"""Convolutions as matrix products on channels-last rows, with no unfold copy (chapter 8).

Shifted rows (stride 1, any kernel, padding and dilation):

Store the input channels-last, one row of C numbers per pixel, with zero rows for the padding:
row ``r`` of the flat (R, C) buffer is one pixel. A pixel's neighbour (i, j) pixels further on is
then always ``i * row_width + j`` rows further in the buffer, so the input under kernel tap
(i, j), for *every* output pixel at once, is one contiguous slice of rows. The convolution is a
sum of kh*kw matrix products, (rows slice) @ (C, O) tap matrix, and each backward pass is the
same kind of sum: no ``unfold`` copy nine times the size of the input is ever made.

To keep the zero rows few, neighbouring images and neighbouring pixel rows share their padding:
the zero columns at the end of one pixel row are also the zero columns before the next, and the
zero rows under one image are those above the next. A slice also covers positions that are not
output pixels (inside the padding); those results are computed and then ignored.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class RowsLayout:
    """Where everything lies in the flat channels-last buffer of a padded batch.

    ``row_width`` pixels per stored image row (W plus the shared zero columns), ``image_rows``
    rows per image (H plus the shared zero rows), ``lead`` zero pixels before the first image.
    The output pixel (n, y, x) is computed at index ``n * image_size + y * row_width + x`` and
    reads tap (i, j) at that index plus ``offsets[i * kw + j]``.
    """
    batch: int
    height: int
    width: int
    out_height: int
    out_width: int
    image_rows: int
    row_width: int
    lead: int
    offsets: tuple

    @property
    def image_size(self):
        return self.image_rows * self.row_width

    @property
    def total(self):
        """Length of the input buffer: the lead, then every image with its shared padding."""
        return self.lead + self.batch * self.image_size

    @property
    def computed(self):
        """How many outputs each tap's product computes: every output pixel is among them."""
        return min(self.batch * self.image_size, self.total - self.offsets[-1])


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
    offsets = tuple(i * dh * row_width + j * dw for i in range(kh) for j in range(kw))
    return RowsLayout(n, height, width, height + 2 * ph - reach_h, width + 2 * pw - reach_w,
                      image_rows, row_width, ph * row_width + pw, offsets)


def to_rows(x, layout):
    """(N, C, H, W) -> the (total, C) channels-last buffer, zeros in the shared padding."""
    n, c, height, width = x.shape
    rows = x.new_zeros(layout.total, c)
    images = rows[layout.lead:].view(n, layout.image_rows, layout.row_width, c)
    images[:, :height, :width] = x.permute(0, 2, 3, 1)
    return rows


def output_pixels(out, layout):
    """The output pixels among the computed positions, as an (N, O, Ho, Wo) view (no copy).

    The view keeps the channels-last memory; the next block's ``to_rows`` copies it quickly.
    """
    images = out.view(layout.batch, layout.image_rows, layout.row_width, out.shape[1])
    return images[:, :layout.out_height, :layout.out_width].permute(0, 3, 1, 2)


def convolve_rows(x, weight, bias, padding, dilation):
    """Stride-1 cross-correlation of ``x`` with ``weight`` plus ``bias``; also return the rows.

    out[r] = bias + sum over taps t of rows[r + offsets[t]] @ tap_t, one ``addmm_`` per tap.
    """
    o, c, kh, kw = weight.shape
    layout = rows_layout(x.shape, (kh, kw), padding, dilation)
    rows = to_rows(x, layout)
    taps = weight.permute(2, 3, 1, 0).reshape(kh * kw, c, o)              # tap t is (C, O)
    out = x.new_empty(layout.batch * layout.image_size, o)
    computed = out[:layout.computed]
    if bias is None:
        computed.zero_()
    else:
        computed[:] = bias
    for tap, offset in zip(taps, layout.offsets):
        computed.addmm_(rows[offset:offset + layout.computed], tap)
    return output_pixels(out, layout), rows


def spread_gradient(grad, layout):
    """The output gradient (N, O, Ho, Wo) in the layout of the computed positions, with zeros at
    the positions that are not output pixels, so that those add nothing in the backward pass."""
    spread = grad.new_zeros(layout.batch * layout.image_size, grad.shape[1])
    output_pixels(spread, layout)[:] = grad
    return spread


def convolve_rows_backward(spread, rows, weight, layout):
    """Gradients of ``convolve_rows`` with respect to its input and its weight (not the bias).

    ``spread`` is the output gradient in the layout of the computed positions (usually
    ``spread_gradient(grad, layout)``). Then, for each tap t at offset s:
    d tap_t = rows[s : s + m]^T @ grad_rows and d rows[s : s + m] += grad_rows @ tap_t^T.
    """
    o, c, kh, kw = weight.shape
    grad_rows = spread[:layout.computed]
    taps = weight.permute(2, 3, 1, 0).reshape(kh * kw, c, o)
    weight_grad = weight.new_empty(kh * kw, o, c)
    input_rows = rows.new_zeros(rows.shape)
    for t, (tap, offset) in enumerate(zip(taps, layout.offsets)):
        tap_rows = slice(offset, offset + layout.computed)
        weight_grad[t] = grad_rows.t().matmul(rows[tap_rows])                # (O, C)
        input_rows[tap_rows].addmm_(grad_rows, tap.t())
    images = input_rows[layout.lead:].view(layout.batch, layout.image_rows, layout.row_width, c)
    input_grad = images[:, :layout.height, :layout.width].permute(0, 3, 1, 2)
    return input_grad, weight_grad.reshape(kh, kw, o, c).permute(2, 3, 0, 1)


# Non-overlapping patches (kernel = stride, no padding, no dilation): the seed networks' 2x2
# stride-2 convolutions. Each output pixel reads its own kh x kw patch and no other does, so
# "unfold" is only a reshape of the image into one row per patch.

def is_patchwise(kernel_size, stride, padding, dilation):
    """True when every input pixel lies in at most one patch (kernel = stride, no padding)."""
    return kernel_size == stride and padding == (0, 0) and dilation == (1, 1)


def to_patches(x, kernel_size):
    """(N, C, H, W) -> (N * Ho * Wo, kh * kw * C): one row per patch, channels last in each tap.

    Rows and columns that no patch reaches (when kh does not divide H) are left out.
    """
    (n, c, height, width), (kh, kw) = x.shape, kernel_size
    out_h, out_w = height // kh, width // kw
    x = x[:, :, :out_h * kh, :out_w * kw].permute(0, 2, 3, 1)               # (N, H, W, C)
    patches = x.reshape(n, out_h, kh, out_w, kw, c).permute(0, 1, 3, 2, 4, 5)
    return patches.reshape(n * out_h * out_w, kh * kw * c)


def from_patches(patches, input_shape, kernel_size):
    """The transpose of ``to_patches``: rows of patches back to (N, C, H, W), zeros elsewhere.

    The result lies channels-last in memory, like the input gradients of the other fast forms.
    """
    (n, c, height, width), (kh, kw) = input_shape, kernel_size
    out_h, out_w = height // kh, width // kw
    image = patches.reshape(n, out_h, out_w, kh, kw, c).permute(0, 1, 3, 2, 4, 5)
    image = image.reshape(n, out_h * kh, out_w * kw, c)
    if (out_h * kh, out_w * kw) != (height, width):
        full = image.new_zeros(n, height, width, c)
        full[:, :out_h * kh, :out_w * kw] = image
        image = full
    return image.permute(0, 3, 1, 2)


def patch_matrix(weight):
    """The weight (O, C, kh, kw) as the (kh * kw * C, O) matrix that multiplies ``to_patches``."""
    return weight.permute(2, 3, 1, 0).reshape(-1, weight.shape[0])


def convolve_patches(x, weight, bias):
    """Convolution with stride = kernel: one product (N*L, kh*kw*C) @ (kh*kw*C, O), plus bias.

    Returns the output as an (N, O, Ho, Wo) view of channels-last memory, and the patches.
    """
    o, kernel = weight.shape[0], tuple(weight.shape[2:])
    patches = to_patches(x, kernel)
    matrix = patch_matrix(weight)
    out = patches.matmul(matrix) if bias is None else bias.addmm(patches, matrix)
    out_h, out_w = x.shape[2] // kernel[0], x.shape[3] // kernel[1]
    return out.reshape(x.shape[0], out_h, out_w, o).permute(0, 3, 1, 2), patches


def convolve_patches_backward(grad, patches, weight, input_shape):
    """Input and weight gradients of ``convolve_patches``: chapter 4's two products, on rows."""
    o, c, kh, kw = weight.shape
    grad_rows = grad.permute(0, 2, 3, 1).reshape(-1, o)                     # (N*L, O)
    weight_grad = patches.t().matmul(grad_rows)                             # (kh*kw*C, O)
    weight_grad = weight_grad.reshape(kh, kw, c, o).permute(3, 2, 0, 1)
    input_grad = from_patches(grad_rows.matmul(patch_matrix(weight).t()), input_shape, (kh, kw))
    return input_grad, weight_grad
