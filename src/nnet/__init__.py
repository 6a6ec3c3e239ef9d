"""nnet: the feedforward network of the derivation notes, from first principles in NumPy."""

from nnet.core.engines import ENGINES, gradients
from nnet.core.network import Network
from nnet.files.model_file import load, save
from nnet.version import __version__

__all__ = ["ENGINES", "Network", "gradients", "load", "save", "__version__"]
