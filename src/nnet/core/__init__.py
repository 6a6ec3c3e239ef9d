"""The notes' mathematics: the network, its activations, losses and initializations, the four
gradient engines, and the finite-difference checks. Imports nothing else of nnet but
:mod:`nnet.errors`."""
