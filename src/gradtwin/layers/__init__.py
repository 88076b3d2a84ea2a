"""The layers people derive by hand, each built twice: `manual/<layer>.py` and `autograd/<layer>.py`.

A layer twin defines, in both files, the same names with the same signatures:
    forward(params, X, *extra) -> out             the layer's output
    backward(params, X, dout, *extra) -> dict     dL/dX (key "X", where X is differentiable) and
                                                  dL/d(each param), for the upstream gradient dout
The manual backward is the derivation, one local derivative per line; the autograd backward is
autograd's vector-Jacobian product of forward. `check_layer` holds the two to each other.
"""

from gradtwin.layers.check import check_layer

__all__ = ["check_layer"]
