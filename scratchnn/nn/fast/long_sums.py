"""The long sums of the weight gradients, split between threads (chapter 8)."""
import math

LONG_SUM_MIN_ROWS = 4096          # below, one product runs (a choice, not yet swept)


def long_sum_product(left, right, parts=4):
    """``left^T @ right`` for two matrices with the same, long, number of rows m.

    This is the shape of every weight gradient: a small result summed over all positions. The
    matrix library shares a product between threads by cutting its result into blocks, and a
    small result can leave one thread with most of the work (how a product is shared depends on
    the BLAS library). So the sum over m is cut into gcd(m, parts) equal pieces (4, 2 or 1 for
    parts = 4: at most 4 threads share it), computed as one batched product, a piece per
    thread, and the pieces' small results are added. Below ``LONG_SUM_MIN_ROWS`` rows one
    product runs.
    """
    m = left.shape[0]
    parts = math.gcd(m, parts) if m >= LONG_SUM_MIN_ROWS else 1
    if parts == 1:
        return left.t().matmul(right)
    pieces = left.reshape(parts, m // parts, -1).transpose(1, 2)
    return pieces.bmm(right.reshape(parts, m // parts, -1)).sum(0)
