"""Tensor-level parity of one output: errors, cosine similarity and SNR against the reference."""

from __future__ import annotations

import math

import numpy as np

# Bit-exact outputs have infinite SNR; JSON has no infinity, so they are recorded as this.
SNR_EXACT_DB = 300.0


def tensor_metrics(reference: np.ndarray, output: np.ndarray) -> dict[str, float]:
    ref = reference.astype(np.float64).ravel()
    out = output.astype(np.float64).ravel()
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape}, output {output.shape}")
    diff = ref - out
    norm = np.linalg.norm(ref) * np.linalg.norm(out)
    cosine = float(ref @ out / norm) if norm > 0 else float(np.array_equal(ref, out))
    noise = float(diff @ diff)
    signal = float(ref @ ref)
    if noise == 0:
        snr = SNR_EXACT_DB
    else:
        snr = min(SNR_EXACT_DB, 10 * math.log10(signal / noise)) if signal > 0 else -SNR_EXACT_DB
    return {"max_abs": float(np.abs(diff).max(initial=0.0)), "mean_abs": float(np.abs(diff).mean()) if diff.size else 0.0,
            "cosine": cosine, "snr_db": snr}
