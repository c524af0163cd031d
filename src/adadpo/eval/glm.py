"""The soft-label logistic GLM behind the length-controlled win rate: a penalised Newton fit and the LC read-out.

Both work on a design ``X`` of shape ``(n, k)`` (one row per comparison), soft targets ``p`` of shape ``(n,)``
(P(model wins) in ``[0, 1]``) and a Gaussian penalty, i.e. they minimise

    sum_i w_i * (softplus(x_i . theta) - p_i * x_i . theta) + 1/2 * sum_j prec_j * (theta_j - mean_j)^2,

the cross-entropy of ``p`` against ``sigmoid(X theta)`` plus a quadratic pull of each coefficient towards
``mean`` (``prec = 1 / C`` everywhere is scikit-learn's L2 penalty with inverse strength ``C``).
Only numpy: no scikit-learn needed.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["fit_soft_logistic", "lc_and_se", "sigmoid"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow."""
    return np.exp(-np.logaddexp(0.0, -x))


def _objective(X: np.ndarray, p: np.ndarray, w: np.ndarray, prec: np.ndarray, mean: np.ndarray,
               theta: np.ndarray) -> float:
    z = X @ theta
    return float(np.sum(w * (np.logaddexp(0.0, z) - p * z)) + 0.5 * np.sum(prec * (theta - mean) ** 2))


def fit_soft_logistic(
    X: np.ndarray,
    p: np.ndarray,
    precision: np.ndarray,
    mean: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    *,
    max_iter: int = 200,
) -> np.ndarray:
    """``theta`` of shape ``(k,)`` minimising the penalised weighted cross-entropy above, by damped Newton.

    Args:
        X: design, ``(n, k)``.
        p: soft targets in ``[0, 1]``, ``(n,)``.
        precision: penalty precision per coefficient, ``(k,)``, non-negative (0: unpenalised).
        mean: penalty centre per coefficient, ``(k,)``; zeros when ``None``.
        weight: per-row weight, ``(n,)``; ones when ``None``.
    """
    k = X.shape[1]
    mean = np.zeros(k) if mean is None else np.asarray(mean, np.float64)
    w = np.ones(len(p)) if weight is None else np.asarray(weight, np.float64)
    prec = np.asarray(precision, np.float64)
    theta = mean.copy()
    value = _objective(X, p, w, prec, mean, theta)
    for _ in range(max_iter):
        mu = sigmoid(X @ theta)
        grad = X.T @ (w * (mu - p)) + prec * (theta - mean)
        hess = X.T @ (X * (w * mu * (1.0 - mu))[:, None]) + np.diag(prec)
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        t = 1.0
        while True:  # backtracking (Armijo) line search: Newton steps can overshoot under near-separation
            candidate = theta - t * step
            new = _objective(X, p, w, prec, mean, candidate)
            if new <= value - 1e-4 * t * float(grad @ step) or t < 1e-10:
                break
            t /= 2
        theta, value = candidate, new
        if np.max(np.abs(t * step)) < 1e-10 * (1.0 + np.max(np.abs(theta))):
            break
    return theta


def lc_and_se(X: np.ndarray, Z: np.ndarray, p: np.ndarray, theta: np.ndarray,
              penalty_hessian: np.ndarray) -> tuple[float, float]:
    """LC ``= mean_i sigmoid(z_i . theta)`` and its standard error.

    ``Z`` is ``X`` with the length column zeroed (the read-out at equal length), both ``(n, k)``; ``penalty_hessian``
    ``(k, k)`` is the penalty's second derivative (``diag(precision)``). The standard error is the influence
    function's (delta method, sandwich covariance): comparison ``i`` moves LC through its own prediction and through
    its pull on ``theta``. NaN when ``n < 2``. Covariates in ``X`` (e.g. an estimated difficulty) count as fixed.
    """
    n = len(p)
    f = sigmoid(Z @ theta)
    lc = float(f.mean())
    if n < 2:
        return lc, math.nan
    mu = sigmoid(X @ theta)
    hessian = X.T @ (X * (mu * (1.0 - mu))[:, None]) + penalty_hessian
    grad = (f * (1.0 - f)) @ Z / n
    influence = (f - lc) + n * ((p - mu) * (X @ (np.linalg.pinv(hessian) @ grad)))
    return lc, float(np.sqrt(np.sum(influence**2) / (n * (n - 1))))
