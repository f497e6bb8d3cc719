"""The default head solved to convergence: optimal, deterministic, written into the Dense
layer the exporters save, cross-validated on the training features only."""

import json

import numpy as np
import pytest

import clf
from clf import hookimpl
from clf.train import linear_head
from conftest import MOBILENET_V2_035, SMALL_BACKBONE, SMALL_SIZE, make_folder, require_shared


def blobs(n_per_class=(60, 60, 60), width=12, seed=0, spread=1.5):
    """Overlapping Gaussian classes: not separable, so the L2 strength matters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(n_per_class), width))
    x = np.concatenate([c + spread * rng.normal(size=(n, width)) for c, n in zip(centres, n_per_class)])
    y = np.concatenate([np.full(n, i) for i, n in enumerate(n_per_class)])
    return x.astype(np.float32), y


def objective_gradient(x, y, kernel, bias, l2, weights=None):
    """The gradient of mean weighted cross-entropy + l2/2 |kernel|^2, computed independently."""
    logits = x.astype(np.float64) @ kernel + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    w = np.ones(len(y)) if weights is None else weights
    g = (p - np.eye(kernel.shape[1])[y]) * (w / w.sum())[:, None]
    return x.T @ g + l2 * kernel, g.sum(0)


@pytest.mark.parametrize("width", [12, 400])  # more rows than features, and fewer
def test_the_solution_is_the_optimum_at_the_chosen_strength(width):
    x, y = blobs(width=width)
    solution = linear_head.solve(x, y, 3)
    assert solution.folds == 5 and solution.converged
    assert solution.l2 in solution.cv_log_loss and solution.l2 == min(solution.cv_log_loss, key=solution.cv_log_loss.get)
    grad_w, grad_b = objective_gradient(x, y, solution.kernel, solution.bias, solution.l2)
    assert np.abs(grad_w).max() < 1e-5 and np.abs(grad_b).max() < 1e-5
    # The search went past the held-out loss's minimum on both sides, not stopped at an end.
    strengths = sorted(solution.cv_log_loss)
    assert strengths[0] < solution.l2 < strengths[-1]


def test_the_same_features_give_the_same_head():
    x, y = blobs()
    a, b = linear_head.solve(x, y, 3), linear_head.solve(x.copy(), y.copy(), 3)
    np.testing.assert_array_equal(a.kernel, b.kernel)
    np.testing.assert_array_equal(a.bias, b.bias)


def test_balanced_class_weights_raise_the_small_class_recall():
    x, y = blobs((200, 20), width=6, seed=3, spread=2.0)
    test_x, test_y = blobs((300, 300), width=6, seed=3, spread=2.0)  # same centres (same seed)
    recall = {}
    for name, weights in (("none", None), ("balanced", {0: 220 / 400, 1: 220 / 40})):
        s = linear_head.solve(x, y, 2, class_weight=weights)
        grad_w, _ = objective_gradient(x, y, s.kernel, s.bias, s.l2,
                                       None if weights is None else np.where(y == 0, weights[0], weights[1]))
        assert np.abs(grad_w).max() < 1e-5  # the weighted objective's optimum
        pred = (test_x @ s.kernel + s.bias).argmax(1)
        recall[name] = np.mean(pred[test_y == 1] == 1)
    assert recall["balanced"] > recall["none"] + 0.1


def test_an_augmented_copy_is_held_out_with_its_image():
    folds = linear_head.stratified_folds(np.array([0] * 7 + [1] * 8), 3)
    assert sorted(np.bincount(folds)) == [5, 5, 5]
    x, y = blobs((30, 30), width=5)
    copies = np.concatenate([x, x + 0.01])  # copies identical up to noise: leaked, they would
    labels = np.concatenate([y, y])  # make the weakest penalty look best
    with_groups = linear_head.solve(copies, labels, 2, n_clean=60)
    leaked = linear_head.solve(copies, labels, 2)
    assert with_groups.l2 > leaked.l2


def test_too_few_images_to_cross_validate_uses_the_default_strength():
    x, y = blobs((1, 1, 1), width=4)
    solution = linear_head.solve(x, y, 3)
    assert solution.folds == 0 and solution.l2 == linear_head.DEFAULT_L2
    assert "too few" in solution.record()["selection"]


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """Two default-solver runs with different seeds, epochs and learning rates (shared by the
    tests below). Real backbone weights and train/val folders: random weights and a random
    split would come from the seed."""
    tmp = tmp_path_factory.mktemp("solved")
    data = make_folder(tmp / "split", split_dirs=True, per_class=8)
    # mobilenet_v2_035 with its real weights: mobilenet_025's 32 px features have dimensions of
    # near-zero spread, whose float32 noise standardisation magnifies past the 1e-5 compared here.
    base = dict(backbone="mobilenet_v2_035", data=str(data), weights=str(require_shared(MOBILENET_V2_035)),
                batch_size=4, image_size=SMALL_SIZE, augment=False, cache_dir=str(tmp / "cache"))
    a = clf.run(clf.RunConfig(**base, seed=1, epochs=2, export=("h5", "keras"), output=str(tmp / "a")))
    b = clf.run(clf.RunConfig(**base, seed=7, epochs=9, lr=0.05, output=str(tmp / "b"), verify=False))
    return a, b, data


def test_default_head_is_solved_the_same_whatever_the_seed(solved):
    a, b, _ = solved
    assert a.training["head"]["solver"] == "lbfgs" and a.history == {}
    for wa, wb in zip(a.classifier.head.weights, b.classifier.head.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    assert a.metrics == b.metrics
    manifest = json.loads((a.run_dir / "manifest.json").read_text())
    assert manifest["training"]["head"]["l2"] == a.training["head"]["l2"] > 0
    assert "cross-validation" in manifest["training"]["head"]["selection"]
    assert not (a.run_dir / "checkpoint").exists()  # nothing to resume: it takes a second
    assert not (a.run_dir / "training_curves.png").exists()  # no epochs, no empty plot


def test_exported_model_equals_the_solved_head(solved):
    from clf.data.images import files_dataset
    from clf.train.features import extract, make_extractor

    a, _, data = solved
    files = [str(p) for p in sorted(data.rglob("*.jpg"))]
    ds = files_dataset(files, [0] * len(files), (SMALL_SIZE, SMALL_SIZE))
    features, _ = extract(make_extractor(a.classifier, (SMALL_SIZE, SMALL_SIZE)), ds, 8)
    standardize, dense = linear_head.linear_layers(a.classifier.head)
    z = linear_head.head_inputs(standardize, features)
    logits = z @ dense.kernel.numpy().astype(np.float64) + dense.bias.numpy()
    solver_probs = np.exp(logits - logits.max(1, keepdims=True))
    solver_probs /= solver_probs.sum(1, keepdims=True)
    images = np.concatenate([x.numpy() for x, _ in ds.batch(64)])
    for artifact in ("model.h5", "model.keras"):
        exported = clf.load_predictor(a.run_dir / artifact).predict_batch(images)[:, :3]  # then the known score
        np.testing.assert_allclose(exported, solver_probs, atol=1e-5)


class LinearPluginHead:
    """A plugin head built exactly like the default one: still trained with Keras fit."""

    @hookimpl
    def register_heads(self, register):
        def build(features, num_classes, **_):
            import keras

            return keras.layers.Dense(num_classes, activation="softmax", name="predictions")(features)

        register("plugin_linear", build)


def test_hidden_layers_and_plugin_heads_keep_keras_fit(small_config, host, tmp_path):
    hidden = clf.run(small_config(solver="auto", hidden_units=4, epochs=2), host=host)
    assert hidden.training["head"]["solver"] == "keras_fit" and len(hidden.history["loss"]) == 2
    host.register(LinearPluginHead(), name="linear-plugin")
    plugin = clf.run(small_config(solver="auto", head="plugin_linear", epochs=2, output=str(tmp_path / "p")),
                     host=host)
    assert plugin.training["head"]["solver"] == "keras_fit"
    assert linear_head.linear_layers(plugin.classifier.head) is not None  # solvable, but not ours


def test_settings_the_solver_does_not_use_are_named_in_a_note(small_config, tmp_path):
    observer = clf.RecordingObserver()
    clf.run(small_config(solver="auto", epochs=7, lr=0.02), observer)
    said = [n for n in observer.notes() if "not used by the default linear head" in n]
    assert len(said) == 1 and "--epochs 7" in said[0] and "--lr 0.02" in said[0] and "--solver keras" in said[0]
    quiet = clf.RecordingObserver()  # the default epoch count (small_config's is 1): nothing to say
    default_epochs = clf.RunConfig.__dataclass_fields__["epochs"].default
    clf.run(small_config(solver="auto", epochs=default_epochs, output=str(tmp_path / "b")), quiet)
    assert not any("not used by the default linear head" in n for n in quiet.notes())
