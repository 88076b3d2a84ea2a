"""gradtwin's own reverse-mode autodiff: a NumPy Tensor whose every op keeps its local derivative beside it.

from gradtwin.autodiff import Tensor, ops
w = Tensor(np.zeros(3), requires_grad=True)
loss = ops.mean((X @ w - Y) ** 2)
loss.backward()                      # w.grad == 2/n * X.T @ (X w - Y)
for node in graph(loss): ...         # the recorded graph in backward order
"""

from gradtwin.autodiff import ops
from gradtwin.autodiff.tensor import Tensor, grad_enabled, graph, no_grad, tap, topological, unbroadcast

__all__ = ["Tensor", "grad_enabled", "graph", "no_grad", "ops", "tap", "topological", "unbroadcast"]
