"""Training: the settings of a run, optimizers and schedules, the batch loop and its
updates (gradient, genetic algorithm, evolution strategies). Built on :mod:`nnet.core`."""
