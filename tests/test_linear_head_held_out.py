"""clf.train.linear_head on given rows (solve_at, held_out): the run's solver, at a given L2
strength or the one its search picks, for clf inspect's out-of-fold heads."""

from __future__ import annotations

import numpy as np

from clf.train import linear_head


def _noisy(n: int = 90, width: int = 40, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width)) + 2.0
    logits = (x - 2.0) @ rng.normal(size=(width, 3)) / 6
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return x, np.array([rng.choice(3, p=row) for row in p])


def test_solve_at_the_chosen_strength_is_the_head_solve_writes() -> None:
    x, y = _noisy()
    weights = {0: 1.0, 1: 2.0, 2: 0.5}
    chosen = linear_head.solve(x, y, 3, class_weight=weights)
    again = linear_head.solve_at(x, y, 3, chosen.l2, class_weight=weights)
    assert again.l2 == chosen.l2 and again.converged
    np.testing.assert_allclose(linear_head.softmax_outputs(again, x), linear_head.softmax_outputs(chosen, x),
                               atol=1e-6)


def test_held_out_scores_each_fold_with_the_solution_on_the_others() -> None:
    x, y = _noisy()
    fold = linear_head.stratified_folds(y, 3)
    folds = [linear_head.HeldOutRows(x[fold != f], y[fold != f], x[fold == f], y[fold == f]) for f in range(3)]
    searched = linear_head.held_out(folds, 3)
    assert searched.l2 == min(searched.cv_log_loss, key=searched.cv_log_loss.get)
    assert len(searched.cv_log_loss) >= 3 and searched.converged
    for f, p in enumerate(searched.probabilities):
        direct = linear_head.solve_at(x[fold != f], y[fold != f], 3, searched.l2)
        # The search's fold solutions start the tight solve; from zero it ends at the same optimum.
        np.testing.assert_allclose(p, linear_head.softmax_outputs(direct, x[fold == f]), atol=1e-5)
    fixed = linear_head.held_out(folds, 3, searched.l2)
    assert fixed.cv_log_loss == {} and fixed.l2 == searched.l2
