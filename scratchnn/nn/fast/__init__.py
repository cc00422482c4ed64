"""The fast machinery of chapter 8: the same functions as the teachable layers, computed faster.

Each layer hands over to this folder in one place, at the top of its ``forward`` and of its
``backward``, the way ``torch.optim.SGD.step`` hands over to ``_single_tensor_sgd`` or
``_multi_tensor_sgd``::

    if fast.conv2d_form(self):                    # chapter 8: the same function, faster
        return fast.conv2d_forward(self, x)

Below, for each layer: which form it runs (``<layer>_form``), and its forward and backward pass
in that form. Each is written like one of the layer's own methods: it reads the layer's
parameters and settings, keeps what backward needs in one ``Saved`` record, ``layer.saved``
(the form included), and adds the parameter gradients into the layer's. Backward reads only
that record, so it runs the backward pass of the form that forward ran, whatever changed since.

The forms, one file each:

* ``shifted_rows.py``: stride-1 convolutions as sums of matrix products on channels-last rows;
* ``patches.py``: kernel = stride (no padding): Conv2d, ConvTranspose2d and MaxPool2d;
* ``fused_upsampling.py``: nearest x2 upsampling + 3x3 convolution, computed on the small map;
* ``long_sums.py``: the weight gradients' long sums, split between threads.

A layer that runs on shifted rows also keeps its padded buffers between calls (``spares``, a
``shifted_rows.Spares``): the next batch of the same shape reuses them instead of new memory.
"""
from ..module import Saved
from .fused_upsampling import (FUSED_SETTING, collapse_kernel, upsample_convolve,
                               upsample_convolve_backward)
from .patches import (convolve_patches, convolve_patches_backward, convolve_transposed_patches,
                      convolve_transposed_patches_backward, is_patchwise, max_pool_patches,
                      max_pool_patches_backward)
from .shifted_rows import ROWS_FORMS, convolve_rows, convolve_rows_backward, spread_gradient
from .shifted_rows import Spares  # noqa: F401  (each Conv2d keeps one: fast.Spares())

SHIFTED_ROWS_MIN_CHANNELS = 16   # with 3 channels one unfold product wins (stored: 3->48, ch. 8);
                                 # 16 itself is a choice between 3 and 48, not yet swept
CONV2D_FORMS = ("patches", "shifted rows") + ROWS_FORMS   # what ``Conv2d.force_form`` may name


# --- Conv2d ----------------------------------------------------------------------------------

def conv2d_form(conv):
    """The fast form that ``conv`` runs, "patches" or "shifted rows"; None for the unfold path.

    * "patches" when the kernel equals the stride (no padding, no dilation): every pixel lies
      in one patch, and unfold is a mere reshape;
    * "shifted rows" for stride 1 with at least ``SHIFTED_ROWS_MIN_CHANNELS`` input channels
      (with fewer, each product is too thin to run fast and one unfold product wins).

    None when ``conv.fast`` is False. ``conv.force_form`` (for tests and benchmarks) runs a form
    that the shapes would not choose: "patches", "shifted rows", or shifted rows in one of
    ``ROWS_FORMS``.
    """
    if not conv.fast:
        return None
    patchwise = is_patchwise(conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    if conv.force_form is not None:
        return forced_conv2d_form(conv, patchwise)
    if patchwise:
        return "patches"
    if conv.stride == (1, 1) and conv.in_channels >= SHIFTED_ROWS_MIN_CHANNELS:
        return "shifted rows"
    return None


def forced_conv2d_form(conv, patchwise):
    """The form that ``conv.force_form`` names, after checking it can compute this convolution."""
    form = "patches" if conv.force_form == "patches" else "shifted rows"
    possible = patchwise if form == "patches" else conv.stride == (1, 1)
    if conv.force_form not in CONV2D_FORMS or not possible:
        raise ValueError(f"Conv2d: cannot force the form {conv.force_form!r} (one of "
                         f"{CONV2D_FORMS}; patches need kernel = stride, no padding, no "
                         f"dilation; shifted rows need stride 1), got {conv!r}")
    return form


def conv2d_forward(conv, x):
    """``Conv2d.forward`` in its fast form, the bias included."""
    form = conv2d_form(conv)
    if form == "patches":
        out, patches = convolve_patches(x, conv.weight, conv.bias)
        conv.saved = Saved(form, x, out.shape, kept=patches)
        return out
    rows_form = conv.force_form if conv.force_form in ROWS_FORMS else None
    out, rows = convolve_rows(x, conv.weight, conv.bias, conv.padding, conv.dilation, rows_form,
                              conv.spares)
    conv.saved = Saved(form, x, out.shape, kept=rows)
    return out


def conv2d_backward(conv, grad):
    """``Conv2d.backward`` in the form of ``conv.saved`` (the bias gradient is already added)."""
    saved = conv.saved
    if saved.form == "patches":
        input_grad, weight_grad = convolve_patches_backward(grad, saved.kept, conv.weight,
                                                            saved.input.shape)
    else:
        rows = saved.kept
        spread = spread_gradient(grad, rows.layout, conv.spares)
        input_grad, weight_grad = convolve_rows_backward(spread, rows, conv.weight)
    conv.weight_grad += weight_grad
    return input_grad


# --- Upsampling ------------------------------------------------------------------------------

def upsampling_form(block):
    """"fused" when ``block`` runs ``upsample_convolve``: ``block.fast`` and the denoiser's
    setting (scale 2, 3x3 kernel, stride 1, padding 1, dilation 1); None otherwise.

    ``block.force_form`` (tests, benchmarks) may name the form of its shifted rows.
    """
    if block.force_form not in (None, *ROWS_FORMS):
        raise ValueError(f"Upsampling: cannot force the form {block.force_form!r} (one of "
                         f"{ROWS_FORMS}, the forms of its shifted rows)")
    conv = block.conv
    setting = (block.upsample.scale_factor, conv.kernel_size, conv.stride, conv.padding,
               conv.dilation)
    return "fused" if block.fast and setting == FUSED_SETTING else None


def upsampling_forward(block, x):
    """``Upsampling.forward`` fused: the four phases of the output computed on the small map."""
    block.conv.check(x, module=block)
    # The collapsed kernels are kept for the backward pass (the weight cannot change between).
    kernels = collapse_kernel(block.weight)
    out, rows = upsample_convolve(x, kernels, block.force_form, block.conv.spares)
    if block.bias is not None:
        out.add_(block.bias.reshape(1, -1, 1, 1))       # out is new: add in place
    block.saved = Saved("fused", x, out.shape, kept=(kernels, rows))
    return out


def upsampling_backward(block, grad):
    """``Upsampling.backward`` fused: all three gradients of ``upsampling_forward``."""
    kernels, rows = block.saved.kept
    conv = block.conv
    if conv.bias is not None:
        conv.bias_grad += grad.sum((2, 3)).sum(0)
    input_grad, weight_grad = upsample_convolve_backward(grad, rows, kernels, conv.weight.shape,
                                                         conv.spares)
    conv.weight_grad += weight_grad
    return input_grad


# --- ConvTranspose2d -------------------------------------------------------------------------

def conv_transpose_form(block):
    """"patches" when the kernel equals the stride (no padding, no output padding: the U-Net's
    2x2 stride-2 case) and ``block.fast``: every input pixel owns its own output block."""
    patchwise = is_patchwise(block.kernel_size, block.stride, block.padding)
    return "patches" if block.fast and patchwise and block.output_padding == (0, 0) else None


def conv_transpose_forward(block, x):
    """``ConvTranspose2d.forward`` on patches, the bias included."""
    output_shape = (x.shape[0], block.out_channels, *block.output_size(*x.shape[2:]))
    out = convolve_transposed_patches(x, block.weight, output_shape)
    if block.bias is not None:
        out.add_(block.bias.reshape(1, -1, 1, 1))       # out is new: add in place
    block.saved = Saved("patches", x, out.shape)
    return out


def conv_transpose_backward(block, grad):
    """``ConvTranspose2d.backward`` on patches (the bias gradient is already added)."""
    input_grad, weight_grad = convolve_transposed_patches_backward(grad, block.saved.input,
                                                                   block.weight)
    block.weight_grad += weight_grad
    return input_grad


# --- MaxPool2d -------------------------------------------------------------------------------

def max_pool_form(pool):
    """"patches" when the windows do not overlap (kernel = stride, no padding: the U-Net's 2x2
    pooling) and ``pool.fast``: the same function without the (N*C)-image unfold."""
    patchwise = is_patchwise(pool.kernel_size, pool.stride, pool.padding)
    return "patches" if pool.fast and patchwise else None


def max_pool_forward(pool, x):
    """``MaxPool2d.forward`` on the taps of the patches; the output is kept for backward."""
    out = max_pool_patches(x, pool.kernel_size)
    pool.saved = Saved("patches", x, out.shape, kept=out)
    return out


def max_pool_backward(pool, grad):
    """``MaxPool2d.backward`` on patches: each gradient goes to its patch's maximum."""
    saved = pool.saved
    return max_pool_patches_backward(grad, saved.input, saved.kept, pool.kernel_size)
