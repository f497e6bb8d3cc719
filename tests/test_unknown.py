"""Unknown-photo rejection: the known score's arithmetic, a threshold chosen from the known
training images only, the score inside every export with the same decision, and clear errors."""

import json
import shutil

import numpy as np
import pytest

import clf
from clf.artifacts.labels import validate_labels
from clf.artifacts.predict import load_predictor
from clf.train import linear_head
from clf.train.unknown import calibrate, make_layer, maha_statistics, raw_scores
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder, make_image


def blobs(n_per_class=(40, 40, 40), width=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = 3 * rng.normal(size=(len(n_per_class), width))
    x = np.concatenate([c + rng.normal(size=(n, width)) for c, n in zip(centres, n_per_class)])
    y = np.concatenate([np.full(n, i) for i, n in enumerate(n_per_class)])
    return x.astype(np.float32), y


def solved(x, y, classes=3):
    solution = linear_head.solve(x.astype(np.float64), y, classes)
    return solution, (solution.kernel, solution.bias)


def test_vim_layer_computes_energy_minus_the_weighted_residual():
    x, y = blobs()
    solution, head = solved(x, y)
    width = x.shape[1]
    layer, _, params = calibrate("vim", x, y, 3, center=np.zeros(width), spread=np.ones(width), accept_known=0.9,
                                 head=head, l2=solution.l2, dim=5)
    origin = layer.origin.numpy().astype(np.float64)
    axes = layer.axes.numpy().astype(np.float64)
    assert params["dim"] == 5 and np.allclose(axes.T @ axes, np.eye(5), atol=1e-5)  # orthonormal axes
    logits = x @ solution.kernel + solution.bias
    energy = np.log(np.exp(logits).sum(axis=1))
    c = x - origin
    residual = np.linalg.norm(c - c @ axes @ axes.T, axis=1)
    expected = energy - params["alpha"] * residual
    assert np.allclose(raw_scores(layer, x), expected, rtol=1e-4, atol=1e-3)


def test_maha_layer_matches_the_ledoit_wolf_precision():
    sklearn = pytest.importorskip("sklearn.covariance")
    x, y = blobs(width=60, n_per_class=(15, 15, 15))  # fewer images than features, as with real backbones
    x = x.astype(np.float64)
    stats = maha_statistics(x, y, 3, None)
    means = np.stack([x[y == c].mean(axis=0) for c in range(3)])
    fitted = sklearn.LedoitWolf(assume_centered=True).fit(x - means[y])
    precision = fitted.precision_
    assert stats["shrinkage"] == pytest.approx(fitted.shrinkage_, rel=1e-9)
    layer = make_layer("maha", 3, x.shape[1], stats, np.zeros(x.shape[1]), np.ones(x.shape[1]))
    probe = x[:10] + 0.5
    d = np.stack([np.einsum("ij,jk,ik->i", probe - m, precision, probe - m) for m in means], axis=1)
    assert np.allclose(raw_scores(layer, probe), -d.min(axis=1), rtol=1e-3)


@pytest.mark.parametrize("kind", ["energy", "max-softmax"])
def test_head_scores_come_from_the_logits(kind):
    x, y = blobs()
    solution, head = solved(x, y)
    layer = make_layer(kind, 3, x.shape[1], {"kernel": head[0], "bias": head[1], "dim": 0, "alpha": 0.0},
                       np.zeros(x.shape[1]), np.ones(x.shape[1]))
    logits = x @ solution.kernel + solution.bias
    top = logits.max(axis=1)
    lse = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    expected = lse if kind == "energy" else np.exp(top - lse)
    assert np.allclose(raw_scores(layer, x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["vim", "maha"])
def test_threshold_accepts_the_stated_share_of_known_images_out_of_fold(kind):
    x, y = blobs(n_per_class=(80, 80, 80))
    solution, head = solved(x, y)
    width = x.shape[1]
    layer, oof, _ = calibrate(kind, x, y, 3, center=np.zeros(width), spread=np.ones(width), accept_known=0.9,
                              head=head, l2=solution.l2, dim=8)
    threshold = float(layer.calibration.numpy()[1])
    assert np.mean(oof >= threshold) == pytest.approx(0.9, abs=0.01)
    # New images drawn like the training ones pass at about that rate; far ones never.
    fresh, _ = blobs(n_per_class=(200, 200, 200), seed=0)
    rng = np.random.default_rng(5)
    far = (rng.normal(size=(100, width)) * 10 + 30).astype(np.float32)
    assert raw_scores(layer, far).max() < threshold
    known = np.asarray(layer(fresh)).ravel()
    assert np.all((known >= 0.5) == (raw_scores(layer, fresh) >= threshold))  # the column encodes the decision


def test_too_few_images_per_class_to_calibrate_is_a_clear_error():
    x, y = blobs(n_per_class=(10, 1, 10))
    with pytest.raises(clf.DataError, match="at least 2 training images in every class"):
        calibrate("maha", x, y, 3, center=np.zeros(x.shape[1]), spread=np.ones(x.shape[1]), accept_known=0.95)


@pytest.fixture(scope="module")
def unknown_runs(tmp_path_factory):
    """Two solved runs on the same training images whose validation images differ, exported to
    every format that reopens (verification on)."""
    root = tmp_path_factory.mktemp("unknown")
    data = make_folder(root / "data", per_class=10, split_dirs=True, val_per_class=3, seed=1)
    other = root / "other"
    shutil.copytree(data / "train", other / "train")
    make_folder(root / "other-val", per_class=5, seed=9)
    shutil.copytree(root / "other-val", other / "val")
    base = dict(backbone=SMALL_BACKBONE, weights="none", image_size=SMALL_SIZE, batch_size=8, augment=False,
                cache_dir=str(root / "cache"))
    first = clf.run(data=str(data), output=str(root / "a"), export=("h5", "keras", "tflite", "onnx"), **base)
    second = clf.run(data=str(other), output=str(root / "b"), verify=False, **base)
    return first, second, data


def labels_of(run):
    return json.loads((run.run_dir / "labels.json").read_text())


def test_the_threshold_depends_on_the_training_images_only(unknown_runs):
    first, second, _ = unknown_runs
    a, b = labels_of(first)["unknown"], labels_of(second)["unknown"]
    assert a["score"] == b["score"] == "vim" and a["column"] == 3
    assert a["score_threshold"] == b["score_threshold"] and a["scale"] == b["scale"]
    assert json.loads((first.run_dir / "manifest.json").read_text())["unknown"] == a


def test_every_export_reaches_the_models_decision(unknown_runs, tmp_path):
    first, _, data = unknown_runs
    labels = labels_of(first)
    results = labels["verification"]["results"]
    assert set(results) == {"h5", "keras", "tflite", "onnx"}
    assert all(r["passed"] and r["known_agreement"] == 1.0 for r in results.values())
    assert all("known_score" in v for v in labels["test_vectors"])
    # Photos of no trained class beside real ones: every format decides each as the model does.
    rng = np.random.default_rng(3)
    for i in range(6):
        make_image(tmp_path / f"odd_{i}.png", 3 + i, rng, size=48, fmt="PNG")
    photos = sorted(map(str, (data / "val").rglob("*.jpg"))) + sorted(map(str, tmp_path.glob("odd_*.png")))
    from clf.infer.decode import Decoder

    images = Decoder((SMALL_SIZE, SMALL_SIZE), first.config.center_crop).batch(photos)
    expected = first.known_scores(photos) >= 0.5
    assert first.predict(photos).shape == (len(photos), 3)
    for fmt in ("h5", "keras", "tflite", "onnx"):
        predictor = load_predictor(first.run_dir, fmt=fmt)
        outputs = predictor.predict_batch(images)
        assert outputs.shape == (len(photos), 4)
        assert np.array_equal(outputs[:, 3] >= 0.5, expected), fmt


def test_unknown_off_keeps_the_plain_output(small_config, tmp_path):
    result = clf.run(small_config(unknown="off", solver="auto"))
    labels = labels_of(result)
    assert "unknown" not in labels and result.known_scores(str(small_config().data)) is None
    assert load_predictor(result.run_dir).output_width() == 3


def test_unsupported_settings_are_clear_errors(small_config):
    with pytest.raises(clf.ConfigError, match="reads the solved linear softmax head"):
        clf.run(small_config(unknown="vim", solver="keras"))
    with pytest.raises(clf.ConfigError, match="cached features"):
        clf.run(small_config(unknown="maha", solver="auto", fine_tune_layers=1))
    with pytest.raises(clf.ConfigError, match="accept_known"):
        clf.RunConfig(accept_known=1.5)
    with pytest.raises(clf.ConfigError, match="unknown"):
        clf.RunConfig(unknown="distance")


def test_decision_agreement_tolerates_flips_only_at_the_threshold_or_below_the_quantized_bar():
    from clf.artifacts.verify import known_agreement

    labels = {"class_names": ["a", "b"], "unknown": {"column": 2, "threshold": 0.5}}
    reference = np.array([[0.9, 0.1, 0.8], [0.2, 0.8, 0.1], [0.5, 0.5, 0.50001]] + [[0.6, 0.4, 0.9]] * 17)
    at_threshold = reference.copy()
    at_threshold[2, 2] = 0.49999  # within the float tolerance of the threshold: not a disagreement
    assert known_agreement(labels, reference, at_threshold, "none") == (0.95, True)
    flipped = reference.copy()
    flipped[0, 2] = 0.3  # a clear flip
    assert known_agreement(labels, reference, flipped, "none") == (0.95, False)
    assert known_agreement(labels, reference, flipped, "int8") == (0.95, True)  # quantized: 95% agree
    flipped[1, 2] = 0.7
    assert known_agreement(labels, reference, flipped, "int8") == (0.9, False)
    assert known_agreement({"class_names": ["a", "b"]}, reference[:, :2], reference[:, :2], "none") == (None, True)


def test_a_label_record_whose_column_does_not_follow_the_classes_is_refused(unknown_runs, tmp_path):
    record = {"class_names": ["a", "b"], "input_size": [32, 32], "unknown": {"column": "2", "threshold": 0.5}}
    with pytest.raises(clf.ModelError, match="an integer 'column'"):
        validate_labels(record)
    first = unknown_runs[0]
    bundle = shutil.copytree(first.run_dir, tmp_path / "bundle")
    labels = labels_of(first)
    labels["unknown"]["column"] = 1
    (bundle / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(clf.ModelError, match=r"then the known score \(unknown.column 1\)"):
        load_predictor(bundle)
