"""Tape twins: the same functions as `gradtwin.autograd`, gradients from gradtwin's own engine (`gradtwin.autodiff`)."""
