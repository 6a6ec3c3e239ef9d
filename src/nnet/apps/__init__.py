"""The applications on top: the ``nnet`` command, the web page, pictures and benchmarks."""
