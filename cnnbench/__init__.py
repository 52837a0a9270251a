"""cnnbench: benchmark convolutional network architectures in PyTorch."""

__version__ = "0.1.0"
