"""--seed: two CPU runs on the same data give the same split, metrics and predictions."""

import json

import numpy as np

import clf
from clf.plugins.directory_loader import load_directory
from conftest import SMALL_SIZE


def test_same_seed_same_split_metrics_and_predictions(small_config, tmp_path, trained_run):
    # Augmentation on and 2 epochs: every random source (split, init, shuffle, augmentation) is
    # exercised. The first run is the session's shared one (the same settings and images,
    # trained earlier in this process), so state left by other tests cannot leak in either.
    a = trained_run.result
    b = clf.run(small_config(seed=a.config.seed, epochs=2, augment=True, output=str(tmp_path / "b")))
    ma, mb = (json.loads((r.run_dir / "manifest.json").read_text()) for r in (a, b))
    assert ma["split"] == mb["split"] and ma["data"]["fingerprint"] == mb["data"]["fingerprint"]
    assert a.history == b.history
    assert (a.run_dir / "metrics.json").read_text() == (b.run_dir / "metrics.json").read_text()
    assert (a.run_dir / "history.csv").read_text() == (b.run_dir / "history.csv").read_text()
    x = np.random.default_rng(0).uniform(0, 255, (5, SMALL_SIZE, SMALL_SIZE, 3)).astype(np.float32)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    pa, pb = (clf.load_predictor(r.run_dir) for r in (a, b))
    np.testing.assert_array_equal(pa.predict_batch(x), pb.predict_batch(x))


def test_another_seed_draws_another_split(image_folder):
    def val_files(seed):
        return load_directory(image_folder, image_size=(SMALL_SIZE, SMALL_SIZE), seed=seed,
                              validation_split=0.34).splits["validation"].files

    assert val_files(1) == val_files(1)
    assert any(val_files(1) != val_files(s) for s in (2, 3, 4))
