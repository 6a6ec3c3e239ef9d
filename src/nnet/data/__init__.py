"""Data: IDX files, the datasets nnet downloads, and pictures turned into inputs."""
