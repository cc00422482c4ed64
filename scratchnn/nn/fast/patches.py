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


def pool_taps(x, kernel_size):
    """Tap (i, j) of every patch at once, for each of the kh*kw taps in order: the strided view
    ``x[:, :, i:Ho*kh:kh, j:Wo*kw:kw]`` (rows and columns that no patch reaches left out; no
    copy)."""
    (kh, kw), (out_h, out_w) = kernel_size, (x.shape[2] // kernel_size[0],
                                             x.shape[3] // kernel_size[1])
    return [x[:, :, i:out_h * kh:kh, j:out_w * kw:kw] for i in range(kh) for j in range(kw)]


def max_pool_patches(x, kernel_size):
    """Max-pooling with stride = kernel: the largest of each patch's kh*kw taps, per channel.

    The maximum is kept tap by tap, in place (``clamp_(min=tap)``): no copy of the patches (a
    ``max(dim=...)`` over such a copy runs several times slower on CPU) and nothing else to
    keep. Which tap held the maximum is worked out by the backward pass, which needs it (a
    forward pass alone, in inference, never does). The backward pass reads this input and output
    again, so they must stay unchanged until then (no layer of the package changes its input in
    place). Returns the (N, C, Ho, Wo) output.
    """
    taps = pool_taps(x, kernel_size)
    out = taps[0].clone()
    for tap in taps[1:]:
        out.clamp_(min=tap)
    return out


def max_pool_patches_backward(grad, x, out, kernel_size):
    """Each output gradient goes to the first tap of its patch that holds the maximum (torch's
    choice when several do); the patch's other taps get zero.

    Tap by tap, in order: out - tap is 0 where the tap holds the maximum and positive elsewhere,
    so its sign (0 or 1) times the gradient not yet claimed is what this tap passes on to the
    taps after it; the tap keeps the rest. The last tap keeps what is left.

    Where torch differs, for values that are not finite: a NaN's sign is 0, so a patch holding a
    NaN sends its gradient to its first tap (torch: to the NaN's), and an infinite or NaN
    gradient, multiplied by 0, makes every tap's gradient NaN (torch: the maximum's only).
    """
    (n, c, height, width), (kh, kw) = x.shape, kernel_size
    shape = (n, height, width, c)                       # channels-last, as the other fast forms
    covered = height % kh == 0 and width % kw == 0      # else rows no patch reaches get zeros
    input_grad = x.new_empty(shape) if covered else x.new_zeros(shape)
    input_grad = input_grad.permute(0, 3, 1, 2)
    grad_taps, unclaimed = pool_taps(input_grad, kernel_size), grad
    for tap, grad_tap in zip(pool_taps(x, kernel_size)[:-1], grad_taps[:-1]):
        passed_on = (out - tap).sign_().mul_(unclaimed)
        grad_tap.copy_(unclaimed).sub_(passed_on)
        unclaimed = passed_on
    grad_taps[-1].copy_(unclaimed)
    return input_grad
