"""Non-overlapping patches: kernel = stride, no padding, no dilation (chapter 8).

Each output pixel reads its own kh x kw patch and no other does, so "unfold" is only a reshape of
the image into one row per patch, channels last. Three layers run on patches: the seed networks'
2x2 stride-2 convolutions, the U-Net's 2x2 max-pooling and its 2x2 stride-2 transposed
convolutions (where every input pixel owns its own output block).
"""
from .long_sums import long_sum_product


def is_patchwise(kernel_size, stride, padding, dilation=(1, 1)):
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
    weight_grad = long_sum_product(patches, grad_rows)                      # (kh*kw*C, O)
    weight_grad = weight_grad.reshape(kh, kw, c, o).permute(3, 2, 0, 1)
    input_grad = from_patches(grad_rows.matmul(patch_matrix(weight).t()), input_shape, (kh, kw))
    return input_grad, weight_grad


def convolve_transposed_patches(x, weight, output_shape):
    """Transposed convolution with stride = kernel (``weight`` (C, O, kh, kw), as torch's): each
    input pixel's row of C numbers times the (C, kh*kw*O) matrix is its own output block."""
    rows = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    blocks = rows.matmul(patch_matrix(weight).t())
    return from_patches(blocks, output_shape, tuple(weight.shape[2:]))


def convolve_transposed_patches_backward(grad, x, weight):
    """Input and weight gradients of ``convolve_transposed_patches``: the output gradient's
    blocks are the patches of a convolution with stride = kernel."""
    (n, c, height, width), (_, o, kh, kw) = x.shape, weight.shape
    blocks = to_patches(grad, (kh, kw))                                      # (N*H*W, kh*kw*O)
    rows = x.permute(0, 2, 3, 1).reshape(-1, c)
    weight_grad = long_sum_product(blocks, rows)                             # (kh*kw*O, C)
    weight_grad = weight_grad.reshape(kh, kw, o, c).permute(3, 2, 0, 1)
    input_rows = blocks.matmul(patch_matrix(weight))                         # (N*H*W, C)
    return input_rows.reshape(n, height, width, c).permute(0, 3, 1, 2), weight_grad


def max_pool_patches(x, kernel_size):
    """Max-pooling with stride = kernel: the largest of each patch's kh*kw taps, per channel.

    Tap (i, j) of every patch at once is the strided view ``x[:, :, i::kh, j::kw]``, so the
    maximum is kept tap by tap, in place (``clamp_(min=tap)``), with no copy of the patches;
    ``max(dim=...)`` over a copy runs several times slower on CPU. Beside it, ``index`` records
    the first tap that holds the maximum, as torch does for ties: where tap t is strictly
    higher than the maximum so far (``higher`` is 1 there, else 0; the sign of a NaN is 0), the
    index becomes t, elsewhere it stays. Since t is larger than every index before it, that is
    ``index = max(index, t * higher)``: one more clamp.

    Returns the output (N, C, Ho, Wo) and the tap of each maximum as (N*Ho*Wo, C) rows.
    """
    (kh, kw), (out_h, out_w) = kernel_size, (x.shape[2] // kernel_size[0],
                                             x.shape[3] // kernel_size[1])
    taps = [x[:, :, i:out_h * kh:kh, j:out_w * kw:kw] for i in range(kh) for j in range(kw)]
    out, index = taps[0].clone(), taps[0].new_zeros(taps[0].shape)
    for number, tap in enumerate(taps[1:], start=1):
        higher = (tap - out).clamp_(min=0).sign_()
        index.clamp_(min=higher.mul_(number))
        out.clamp_(min=tap)
    return out, index.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).long()


def max_pool_patches_backward(grad, argmax, input_shape, kernel_size):
    """Each output gradient goes to its patch's maximum, the patch's other taps get zero."""
    c, (kh, kw) = input_shape[1], kernel_size
    rows = grad.permute(0, 2, 3, 1).reshape(-1, 1, c)                     # (N*L, 1, C)
    patches = rows.new_zeros(rows.shape[0], kh * kw, c)
    patches.scatter_(1, argmax.unsqueeze(1), rows)
    return from_patches(patches.reshape(rows.shape[0], -1), input_shape, kernel_size)
