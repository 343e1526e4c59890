"""The Kozachenko-Leonenko k-nearest-neighbour entropy estimate: ground truth from samples alone.

Consistent for any density, so it scores samplers without a tractable log-density (SQL's
amortised sampler) and checks the ones with one (S2AC's closed form). The function lives beside
the losses (:func:`s2ac_lit.objectives.common.knn_entropy`), whose SQL entropy uses it.
"""

from __future__ import annotations

from s2ac_lit.objectives.common import knn_entropy

__all__ = ["knn_entropy"]
