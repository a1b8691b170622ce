"""Firmware packaging: what embedded engineers ship besides the model file (docs/ARCHITECTURE.md,
"Firmware"): the TensorFlow Lite Micro kernels a model needs (`kernels.py`), the model read and
run in the real TFLM interpreter with its smallest working arena (`micro.py`, worker side), the
C sources (`sources.py`), the per-target bundle with checksums (`bundle.py`) and the Python
inference sample copied beside embedded artifacts (`sample.py`).
"""
