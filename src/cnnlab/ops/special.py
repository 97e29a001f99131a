"""The normal distribution's CDF and density, and erfc, which the exact GELU needs.

NumPy has no erf, and cnnlab takes no dependency for one. The choices, timed on the default
ViT's GELU input (128 x 50 x 128 float32 values), one thread, in one run on the shared
2-core machine (times vary twofold with its load; their ratios hold):

- math.erfc through np.frompyfunc: exact, but Python per value: 113 ms.
- W. J. Cody's rational Chebyshev approximations ("Rational Chebyshev approximations for the
  error function", Math. Comp. 23, 1969; the coefficients of netlib SPECFUN's CALERF), three
  ranges of |z|: [0, 0.46875], (0.46875, 4], beyond. Against math.erfc over [-26, 26]:
  relative error below 1e-15 in float64. Selecting the ranges costs copies: 97 ms.
- Cody's middle range alone on every |z| (it extrapolates to 5e-12): no masks, but its two
  degree-8 polynomials make 34 of 46 passes over the data: 23 ms.
- One rational function of u = |x| for the whole range, Phi(-u) = exp(-u^2 / 2) P(u) / Q(u),
  P of degree 4 and Q of degree 5 (FIT_NUM, FIT_DEN: a weighted least-squares fit, Lawson's
  iteration, of erfcx(u / sqrt 2) / 2 on [0, 14]; relative error 5.5e-9 in float64), the
  sign handled by arithmetic: 10 ms, the density exp(-x^2 / 2) / sqrt(2 pi) included.
  (torch's fused float32 GELU: under 1 ms.)

So float64 (gradient checks, parity tests) gets Cody's three ranges, exact to rounding, and
float32 (training) the fit, evaluated in float32 in cache-sized blocks.
Against math.erfc its Phi is within 1.2e-7 absolute (two float32 steps near 1) and 2e-6
relative for x > -6 (the rounding of x^2 inside exp, amplified by x^2 / 2): what float32
holds, as torch's own float32 erf.

The GELU itself (`gelu_and_slope`) asks for no more than it needs: x Phi(x) as
max(x, 0) - |x| Phi(-|x|) (three passes where Phi(x) from its sign and then x * Phi(x) took
six), the density only for the slope Phi(x) + x phi(x) that backward multiplies by, and |x|
capped only in blocks that reach the cap. Blocks of 65536 values (256 kB an array), the
ViT's input above, one thread: 4.1 ms for Phi and phi in blocks of 16384 and then x * Phi,
2.6 ms for the GELU alone, 3.8 ms with its slope.
"""

import math

import numpy as np

from cnnlab.threads import in_blocks

# Cody's coefficients, highest power first (each denominator's leading coefficient is 1).
# erf(y) = y * ERF_NUM(y^2) / ERF_DEN(y^2) for |y| <= 0.46875
ERF_NUM = (1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
           3.77485237685302021e02, 3.20937758913846947e03)
ERF_DEN = (1.0, 2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
           2.84423683343917062e03)
# erfc(y) = exp(-y^2) * MID_NUM(y) / MID_DEN(y) for 0.46875 < y <= 4
MID_NUM = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00,
           6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02,
           1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03)
MID_DEN = (1.0, 1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
           1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
           3.43936767414372164e03, 1.23033935480374942e03)
# erfc(y) = exp(-y^2) / y * (1/sqrt(pi) - r * TAIL_NUM(r) / TAIL_DEN(r)), r = 1/y^2, for y > 4
TAIL_NUM = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
            1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4)
TAIL_DEN = (1.0, 2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
            6.05183413124413191e-2, 2.33520497626869185e-3)
# Phi(-u) = exp(-u^2 / 2) * FIT_NUM(u) / FIT_DEN(u) for 0 <= u <= 14, relative error 5.5e-9
FIT_NUM = (3.989473052675e-01, 3.949983294213e00, 1.785172605325e01, 4.277973919596e01,
           4.891885283428e01)
FIT_DEN = (1.0, 9.901806023170e00, 4.573239843339e01, 1.173361927087e02, 1.636227113661e02,
           9.783770512910e01)
SMALL, LARGE = 0.46875, 4.0
# |x| is capped where Phi(-|x|) nears float32's smallest normal number (1.2e-38): arithmetic
# on subnormal numbers is about 100 times slower. Below x = -12.9 float32 Phi stays at
# Phi(-12.9) = 2.2e-38 instead of shrinking further: an absolute error under 3e-38.
LAST_NORMAL = 12.9
BLOCK = 65536  # values per block of the float32 path: its few temporaries stay in cache (L2)


def _polynomial(coefficients, t):
    """sum of coefficients[i] * t ** (n - i), n >= 1, by Horner's rule, in t's dtype."""
    if coefficients[0] == 1:
        result = t + coefficients[1]
    else:
        result = t * coefficients[0]
        result += coefficients[1]
    for coefficient in coefficients[2:]:
        result *= t
        result += coefficient
    return result


def _exp_neg_square(y):
    """exp(-y^2), y >= 0, as Cody: y^2 split so its rounding is not amplified by exp."""
    head = np.trunc(y * 16) / 16
    return np.exp(-head * head) * np.exp(-(y - head) * (y + head))


def _erfc_exact(z):
    """erfc(z) in float64 by Cody's three ranges: relative error below 1e-15."""
    z = np.asarray(z, dtype=np.float64)
    y = np.abs(z)
    out = np.empty_like(y)
    small = y <= SMALL
    zs = z[small]
    out[small] = 1 - zs * _polynomial(ERF_NUM, zs * zs) / _polynomial(ERF_DEN, zs * zs)
    middle = (y > SMALL) & (y <= LARGE)
    ym = y[middle]
    out[middle] = _exp_neg_square(ym) * _polynomial(MID_NUM, ym) / _polynomial(MID_DEN, ym)
    large = y > LARGE
    yl = np.minimum(y[large], 28.0)  # erfc(28) underflows float64 (and inf - inf is nan)
    r = 1 / (yl * yl)
    ratio = r * _polynomial(TAIL_NUM, r) / _polynomial(TAIL_DEN, r)
    out[large] = _exp_neg_square(yl) / yl * (1 / math.sqrt(math.pi) - ratio)
    negative = ~small & (z < 0)
    out[negative] = 2 - out[negative]
    out[np.isnan(z)] = np.nan
    return out


def _tail_and_kernel(u, kernel):
    """Phi(-u) for a float32 block u >= 0 (at most LAST_NORMAL) by the fitted rational, and
    exp(-u^2 / 2) written into `kernel` (u's shape)."""
    tail = _polynomial(FIT_NUM, u)
    tail /= _polynomial(FIT_DEN, u)
    np.square(u, out=kernel)
    kernel *= -0.5
    np.exp(kernel, out=kernel)
    tail *= kernel
    return tail


def _capped_abs(values):
    """|values| at most LAST_NORMAL (a NaN stays NaN); the cap's pass only where it is needed
    (a NaN makes the max NaN: then too)."""
    u = np.abs(values)
    if not u.max() <= LAST_NORMAL:
        np.minimum(u, LAST_NORMAL, out=u)
    return u


def _cdf_and_pdf_fast(x):
    """(Phi(x), phi(x)) for a float32 array by the fitted rational (see the module docstring)."""
    flat = np.ascontiguousarray(x).reshape(-1)
    cdf, pdf = np.empty_like(flat), np.empty_like(flat)

    def block_work(block):
        tail = _tail_and_kernel(_capped_abs(flat[block]), pdf[block])  # Phi(-|x|)
        # Phi(x) = [x >= 0] - sign(x) Phi(-|x|): exact in both tails, and 10 times faster
        # than a masked copy (np.copyto(..., where=)).
        np.copysign(tail, flat[block], out=tail)
        np.subtract(np.logical_not(np.signbit(flat[block])), tail, out=cdf[block])
        pdf[block] *= 1 / math.sqrt(2 * math.pi)

    in_blocks(block_work, len(flat), BLOCK)
    return cdf.reshape(x.shape), pdf.reshape(x.shape)


def _gelu_fast(x, slope):
    """gelu_and_slope for a float32 array, block by block (see there)."""
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    grad = np.empty_like(flat) if slope else None

    def block_work(block):
        values = flat[block]
        u = _capped_abs(values)
        kernel = np.empty_like(u)
        tail = _tail_and_kernel(u, kernel)  # Phi(-|x|)
        if slope:  # Phi(x) + x phi(x), Phi(x) = [x >= 0] - sign(x) Phi(-|x|)
            part = grad[block]
            np.multiply(values, kernel, out=part)
            part *= 1 / math.sqrt(2 * math.pi)
            part -= np.copysign(tail, values, out=kernel)
            part += np.logical_not(np.signbit(values))
        # x Phi(x) = max(x, 0) - |x| Phi(-|x|): relative accuracy in both tails too
        tail *= u
        np.maximum(values, 0, out=out[block])
        out[block] -= tail

    in_blocks(block_work, len(flat), BLOCK)
    return out.reshape(x.shape), (grad.reshape(x.shape) if slope else None)


def gelu_and_slope(x, slope=True):
    """GELU(x) = x Phi(x) and, when `slope`, its derivative Phi(x) + x phi(x), elementwise.

    x: ndarray of any shape -> (out, derivative or None), arrays of x's shape and dtype.
    float64 from Cody's erfc, exact to rounding. float32 from the fitted rational in blocks
    that stay in cache, out as max(x, 0) - |x| Phi(-|x|): about 20 passes over each block where
    x * Phi(x) after `normal_cdf_and_pdf` took 28, and no density unless the slope is asked for.
    """
    if x.dtype == np.float32:
        return _gelu_fast(x, slope)
    cdf, pdf = normal_cdf_and_pdf(x)
    out = x * cdf
    if not slope:
        return out, None
    pdf *= x
    pdf += cdf
    return out, pdf


def erfc(z):
    """The complementary error function 1 - erf(z), elementwise, float64 to rounding."""
    return _erfc_exact(z)


def normal_cdf_and_pdf(x):
    """Phi(x) = P(X <= x) = erfc(-x / sqrt(2)) / 2 and phi(x) = exp(-x^2 / 2) / sqrt(2 pi) for
    X ~ N(0, 1), elementwise.

    x: ndarray of any shape -> two arrays of its shape and dtype. float64 exact to rounding
    (Cody); float32 by the fitted rational (see the module docstring).
    """
    if x.dtype == np.float32:
        return _cdf_and_pdf_fast(x)
    x64 = np.asarray(x, dtype=np.float64)
    cdf = 0.5 * _erfc_exact(-x64 / math.sqrt(2))
    pdf = np.exp(-0.5 * x64 * x64) / math.sqrt(2 * math.pi)
    return cdf.astype(x.dtype, copy=False), pdf.astype(x.dtype, copy=False)
