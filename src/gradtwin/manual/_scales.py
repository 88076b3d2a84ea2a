"""What the manual twins' rounding scales share: the allowance for results flushed to zero."""

from __future__ import annotations

import numpy as np

# The relative rounding model (|error| <= u * |value| per operation) fails below float32's
# smallest normal number: there a result may come out subnormal, or flushed to zero (torch's
# vectorized exp does that), an absolute error of up to that number. Adding FLUSH to the
# magnitude of every value that can land there (an exp, a sigmoid, a product, a division)
# keeps gamma * scale a bound, since gamma >= u32 in float32. In float64 it adds about
# gamma64 * 2e-31 to a tolerance: nothing, and float64's own smallest normal (2e-308) is
# covered many times over.
FLUSH = float(np.finfo(np.float32).tiny) / (float(np.finfo(np.float32).eps) / 2.0)
