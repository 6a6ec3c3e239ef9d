"""Files nnet writes and reads back: atomic writes, model files and checkpoints, all read
as untrusted input."""
