"""The framework bridge: a model converted to the other framework (TensorFlow SavedModel,
PyTorch ExportedProgram or TorchScript) as a first-class source, with its own spec."""
