"""nnet: the feedforward network of the derivation notes, from first principles in NumPy."""

from nnet.engines import ENGINES, gradients
from nnet.model_file import load
from nnet.network import Network

__version__ = "0.1.0"

__all__ = ["ENGINES", "Network", "gradients", "load", "__version__"]
