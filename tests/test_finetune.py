"""Two-phase fine-tuning changes only the unfrozen top layers; BatchNorm stays put."""

import numpy as np
import pytest

import clf
from clf import ConfigError
from clf.train.fit import trainable_candidates, unfreeze_top
from clf.train.model import build_backbone
from conftest import SMALL_BACKBONE, SMALL_SIZE


def test_fine_tuning_changes_only_the_unfrozen_layers(small_config, host, tmp_path):
    import keras

    keras.utils.set_random_seed(3)
    base = build_backbone(host.backbones.get(SMALL_BACKBONE), (SMALL_SIZE, SMALL_SIZE), None)
    weights_file = tmp_path / "start.weights.h5"
    base.save_weights(str(weights_file))
    before = [[w.copy() for w in layer.get_weights()] for layer in base.layers]
    obs = clf.RecordingObserver()
    result = clf.run(small_config(verify=True, weights=str(weights_file), fine_tune_layers=2, fine_tune_epochs=2,
                                  lr=1e-2, augment=True), obs)
    assert len(result.history["fine_tune_loss"]) == 2
    assert any("Fine-tuning 2 backbone layer(s)" in n and "learning rate 0.001" in n for n in obs.notes())
    after = result.classifier.backbone
    top = {layer.name for layer in trainable_candidates(after)[-2:]}
    changed = {layer.name for layer, old in zip(after.layers, before)
               if any(not np.array_equal(a, b) for a, b in zip(old, layer.get_weights()))}
    assert changed == top
    bn = [layer for layer in after.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and not any(layer.trainable for layer in bn)


def test_unfreeze_all_and_too_many(host):
    base = build_backbone(host.backbones.get(SMALL_BACKBONE), (SMALL_SIZE, SMALL_SIZE), None)
    n = len(trainable_candidates(base))
    names = unfreeze_top(base, "all")
    assert len(names) == n and len(base.trainable_weights) > 0
    with pytest.raises(ConfigError, match=f"--fine-tune-layers {n + 1} but backbone .* has {n} layers"):
        unfreeze_top(base, n + 1)


def test_fine_tune_config_validation():
    assert clf.RunConfig(fine_tune_layers="all").fine_tune_layers == "all"
    assert clf.RunConfig(fine_tune_layers="3").fine_tune_layers == 3
    for bad in ("-1", "some", -2, 1.5):
        with pytest.raises(ConfigError, match="fine_tune_layers"):
            clf.RunConfig(fine_tune_layers=bad)
    with pytest.raises(ConfigError, match="class_weight"):
        clf.RunConfig(class_weight="inverse")
    with pytest.raises(ConfigError, match="augment_copies"):
        clf.RunConfig(augment_copies=-1)
    with pytest.raises(ConfigError, match="patience"):
        clf.RunConfig(patience=-1)
