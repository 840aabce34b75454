"""Models: the wrapped-model contract, PyTorch and TensorFlow counting wrappers, layouts."""
