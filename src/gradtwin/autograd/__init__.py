"""Autograd twins: the same functions as `gradtwin.manual`, gradients from `loss.backward()`."""
