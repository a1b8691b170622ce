"""deployer: a multi-target deployment compiler for object detectors."""

__version__ = "0.1.0"
