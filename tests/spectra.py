"""Dense symmetric test matrices with a chosen spectrum, for the eigensolver tests."""

import numpy as np


def matrix_with_spectrum(eigenvalues, seed=0):
    """A symmetric ``(n, n)`` matrix ``Q diag(eigenvalues) Qᵀ`` with a random orthogonal ``Q``
    (seeded), for comparing an eigensolver with the spectrum it was built from."""
    rng = np.random.default_rng(seed)
    n = len(eigenvalues)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = Q @ np.diag(eigenvalues) @ Q.T
    return (A + A.T) / 2
