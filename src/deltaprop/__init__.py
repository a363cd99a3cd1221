"""deltaprop: error backpropagation exactly as the derivations write it.

The core imports with NumPy alone.  Start with :mod:`deltaprop.equations` (the
equations, one function each) and :mod:`deltaprop.backprop` (the drivers).
"""

from . import activations, equations, losses
from .backprop import (
    Gradients,
    Trace,
    Workspace,
    backward,
    forward,
    gradients,
    loss_value,
    predict,
    step,
    train_step,
)
from .network import Network

__version__ = "0.1.0"

__all__ = [
    "Network", "Trace", "Gradients", "Workspace", "forward", "backward", "gradients",
    "loss_value", "predict", "step", "train_step", "activations", "losses", "equations",
    "__version__",
]
