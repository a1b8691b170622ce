"""Tensor-level parity of one output: errors, cosine similarity and SNR against the reference."""

from __future__ import annotations

import math

import numpy as np

# Bit-exact outputs have infinite SNR; JSON has no infinity, so SNR is bounded by +-this
# (an exact match reads 300 dB, noise on an all-zero reference -300 dB) everywhere.
SNR_EXACT_DB = 300.0
# The report's per-output error histogram: |artifact - reference| counted per decade from
# 1e-7 to 1e3 (the first bin holds exact matches and smaller errors, the last larger ones).
ERROR_DECADES = tuple(range(-7, 4))


def snr_db(signal: float, noise: float) -> float:
    """10*log10(signal/noise) from the sums of squares, bounded to +-SNR_EXACT_DB."""
    if noise == 0:
        return SNR_EXACT_DB
    if signal <= 0:
        return -SNR_EXACT_DB
    return max(-SNR_EXACT_DB, min(SNR_EXACT_DB, 10 * math.log10(signal / noise)))


def tensor_snr_db(reference: np.ndarray, output: np.ndarray) -> float:
    ref = reference.astype(np.float64).ravel()
    diff = ref - output.astype(np.float64).ravel()
    return snr_db(float(ref @ ref), float(diff @ diff))


def tensor_metrics(reference: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Errors, cosine and SNR of one output against the reference (shapes must match: the
    runner contract has checked them)."""
    ref = reference.astype(np.float64).ravel()
    out = output.astype(np.float64).ravel()
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape}, output {output.shape}")
    diff = ref - out
    norm = np.linalg.norm(ref) * np.linalg.norm(out)
    cosine = float(ref @ out / norm) if norm > 0 else float(np.array_equal(ref, out))
    snr = snr_db(float(ref @ ref), float(diff @ diff))
    edges = np.array([10.0 ** k for k in ERROR_DECADES])
    counts = np.bincount(np.searchsorted(edges, np.abs(diff), side="right"), minlength=len(edges) + 1)
    return {"max_abs": float(np.abs(diff).max(initial=0.0)), "mean_abs": float(np.abs(diff).mean()) if diff.size else 0.0,
            "cosine": cosine, "snr_db": snr,
            "abs_error_hist": {"decades": list(ERROR_DECADES), "counts": [int(c) for c in counts]}}
