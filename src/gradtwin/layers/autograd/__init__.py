"""The layers' autograd twins: forward in torch, backward as autograd's vector-Jacobian product."""
