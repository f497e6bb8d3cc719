"""Keras fit and fine-tuning: the schedule, label smoothing and weight decay reach the
optimizer and the loss, and the best validation epoch is the one kept."""

import json

import numpy as np
import pytest

import clf
from clf.train import checkpoint, optim
from conftest import SMALL_SIZE, make_folder


def test_warm_up_then_cosine_decay_reaches_the_optimizer(small_config):
    # 15 training images, batch 4: 4 steps an epoch, 16 in all, warm-up over 2.
    result = clf.run(small_config(epochs=4, lr=0.01))
    rates = result.history["learning_rate"]
    schedule = result.classifier.head.optimizer.learning_rate  # the value now: the last step's
    assert rates[0] == pytest.approx(0.01 * 0.5 * (1 + np.cos(np.pi * 2 / 14)), rel=1e-4)
    assert rates == sorted(rates, reverse=True) and rates[-1] == pytest.approx(0.0, abs=1e-9)
    assert float(schedule) == pytest.approx(0.0, abs=1e-9)
    assert "warm-up over 2 steps" in result.training["head"]["schedule"]
    constant = clf.run(small_config(epochs=2, lr=0.01, schedule="constant", output=small_config().output + "-c"))
    assert constant.history["learning_rate"] == pytest.approx([0.01, 0.01])


def test_label_smoothing_is_the_loss_fit_minimises():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss=optim.make_loss(0.2))
    x, y = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32), np.arange(8) % 4
    p = model.predict(x, verbose=0).astype(np.float64)
    target = 0.8 * np.eye(4)[y] + 0.2 / 4
    expected = np.mean(-(target * np.log(p)).sum(1))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-5)
    assert optim.make_loss(0.0) == "sparse_categorical_crossentropy"


def test_label_smoothing_and_weight_decay_reach_the_head_fit(small_config, tmp_path):
    plain = clf.run(small_config(epochs=6, lr=0.05, output=str(tmp_path / "plain")))
    tuned = clf.run(small_config(epochs=6, lr=0.05, label_smoothing=0.5, weight_decay=0.3,
                                 output=str(tmp_path / "tuned")))
    head = tuned.classifier.head
    assert type(head.optimizer).__name__ == "AdamW" and head.optimizer.weight_decay == pytest.approx(0.3)
    assert isinstance(head.loss, optim.SmoothedSparseCrossentropy) and head.loss.label_smoothing == 0.5
    assert type(plain.classifier.head.optimizer).__name__ == "Adam"

    def kernel_norm(result):
        return float(np.linalg.norm(result.classifier.head.get_layer("predictions").kernel.numpy()))

    assert kernel_norm(tuned) < 0.9 * kernel_norm(plain)  # decayed toward 0
    record = json.loads((tuned.run_dir / "manifest.json").read_text())["training"]["head"]
    assert record["label_smoothing"] == 0.5 and record["optimizer"] == "AdamW"


def test_fine_tuning_gets_the_schedule_smoothing_and_decay(small_config):
    result = clf.run(small_config(epochs=1, fine_tune_layers=2, fine_tune_epochs=3, label_smoothing=0.1,
                                  weight_decay=0.01))
    model = result.classifier.model
    assert type(model.optimizer).__name__ == "AdamW" and model.optimizer.weight_decay == pytest.approx(0.01)
    assert model.loss.label_smoothing == pytest.approx(0.1)
    rates = result.history["fine_tune_learning_rate"]
    assert len(rates) == 3 and rates == sorted(rates, reverse=True) and rates[-1] == pytest.approx(0.0, abs=1e-9)
    assert result.training["fine_tune"]["kept"] in ("best", "last (no validation loss to choose by)")
    assert (result.run_dir / "model.h5").is_file()  # the compiled loss and schedule serialise


def misleading(small_config, tmp_path, name, **changes):
    """A run whose validation folders hold the other classes' images: the better the head
    learns the training images, the worse its validation loss, so the first epoch is best."""
    data = tmp_path / "swapped"
    if not data.exists():
        make_folder(data, split_dirs=True, per_class=6, val_per_class=3)
        val = data / "val"
        (val / "ant").rename(val / "tmp")
        (val / "bee").rename(val / "ant")
        (val / "tmp").rename(val / "bee")
    return clf.run(small_config(data=str(data), epochs=6, lr=0.05, schedule="constant",
                                output=str(tmp_path / name), **changes))


def validation_loss(result, data):
    """Keras' own loss of the kept head on the validation images' features (clf's report
    clips probabilities at 1e-7; Keras computes a softmax's loss from its logits)."""
    from clf.data.images import ImageSize, files_dataset
    from clf.train.features import extract, make_extractor

    files = sorted((data / "val").rglob("*.jpg"))
    labels = [["ant", "bee", "cat"].index(f.parent.name) for f in files]
    size = ImageSize((SMALL_SIZE, SMALL_SIZE), result.config.center_crop)  # as the run decoded them
    features, y = extract(make_extractor(result.classifier, size), files_dataset([str(f) for f in files], labels, size), 8)
    return result.classifier.head.evaluate(features, y, verbose=0)[0]


def test_the_best_validation_epoch_is_kept_and_last_epoch_keeps_the_last(small_config, tmp_path):
    best = misleading(small_config, tmp_path, "best")
    val = best.history["val_loss"]
    kept = int(np.argmin(val)) + 1
    assert kept != len(val), "the setup must make the last epoch worse than the best for this test to mean anything"
    assert best.training["head"]["kept_epoch"] == kept and best.training["head"]["kept"] == "best"
    assert validation_loss(best, tmp_path / "swapped") == pytest.approx(min(val), rel=1e-4)
    last = misleading(small_config, tmp_path, "last", last_epoch=True)
    assert last.history["val_loss"] == pytest.approx(val, rel=1e-5)  # the same training
    assert validation_loss(last, tmp_path / "swapped") == pytest.approx(val[-1], rel=1e-4)
    assert last.training["head"]["kept"] == "last (--last-epoch)"
    manifest = json.loads((best.run_dir / "manifest.json").read_text())
    assert manifest["training"]["head"]["kept_epoch"] == kept


def test_checkpoint_keeps_the_best_epoch_for_a_resumed_run(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    values = [np.full(w.shape, 7.0, np.float32) for w in model.weights]
    ckpt_dir = checkpoint.save(tmp_path, model, phase="train", epoch=5, epochs=9, history={}, config={},
                               best=(3, 0.25, values))
    ckpt = checkpoint.latest(tmp_path, "train")
    assert ckpt.path == ckpt_dir
    epoch, loss, restored = checkpoint.best_so_far(ckpt)
    assert (epoch, loss) == (3, 0.25) and all(np.array_equal(a, b) for a, b in zip(restored, values))
