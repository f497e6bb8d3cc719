"""Feature caching: exported model == cached path, disk cache hit / miss / invalidation."""

import shutil

import numpy as np
import pytest

import clf
from clf.data.images import files_dataset
from clf.files import file_sha256
from clf.train.feature_cache import FeatureCache
from clf.train.features import extract, make_extractor, split_features
from clf.train.model import Classifier, build_backbone
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder, make_image


def _images(files):
    ds = files_dataset(files, [0] * len(files), (SMALL_SIZE, SMALL_SIZE)).batch(64)
    return np.concatenate([x.numpy() for x, _ in ds])


def test_exported_model_matches_the_cached_feature_path(trained_run):
    result = trained_run.result
    files = [str(p) for p in sorted(trained_run.data.rglob("*.jpg"))]
    c = result.classifier
    extractor = make_extractor(c, (SMALL_SIZE, SMALL_SIZE))
    features, _ = extract(extractor, files_dataset(files, [0] * len(files), (SMALL_SIZE, SMALL_SIZE)), 8)
    cached_path = c.head.predict(features, verbose=0)
    images = _images(files)
    # The model's outputs: the class probabilities, then the known score.
    np.testing.assert_allclose(result.model.predict(images, verbose=0)[:, :3], cached_path, atol=1e-5)
    exported = clf.load_predictor(result.run_dir).predict_batch(images)  # reloaded model.h5
    np.testing.assert_allclose(exported[:, :3], cached_path, atol=1e-5)
    assert "standardize" in [layer.name for layer in c.head.layers]


def test_warm_run_skips_extraction_and_gives_the_same_model(small_config, tmp_path):
    a = clf.run(small_config(epochs=2))
    assert a.extraction["train"] == {"extracted": 15, "cached": 0}
    b = clf.run(small_config(epochs=2, output=str(tmp_path / "run2")))
    assert b.extraction["train"] == {"extracted": 0, "cached": 15}
    assert b.extraction["validation"] == {"extracted": 0, "cached": 3}
    assert b.history["loss"] == pytest.approx(a.history["loss"], rel=1e-5)
    c = clf.run(small_config(epochs=2, lr=1e-3, hidden_units=4, output=str(tmp_path / "run3")))
    assert c.extraction["train"]["extracted"] == 0  # another head and lr reuse the features


def _listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_no_cache_writes_nothing(small_config, feature_cache_dir, trained_run):
    """--no-cache neither writes to the cache nor reads from it."""
    # A cache already warm for this data and backbone (the shared run's, copied) ...
    shutil.copytree(trained_run.cache, feature_cache_dir)
    before = _listing(feature_cache_dir)
    result = clf.run(small_config(cache=False))
    assert result.extraction["train"] == {"extracted": 15, "cached": 0}  # ... is not read
    assert _listing(feature_cache_dir) == before  # ... nor written to


@pytest.fixture
def extraction(tmp_path, host):
    """A loader bundle over train/val folders, an extractor and a cache factory."""
    root = make_folder(tmp_path / "data", split_dirs=True, per_class=4)
    backbone = host.backbones.get(SMALL_BACKBONE)
    import keras

    keras.utils.set_random_seed(0)
    base = build_backbone(backbone, (SMALL_SIZE, SMALL_SIZE), None)
    extractor = make_extractor(Classifier(None, base, None, backbone.preprocess), (SMALL_SIZE, SMALL_SIZE))

    def load():
        return host.loaders.get("directory").load(str(root), image_size=(SMALL_SIZE, SMALL_SIZE), seed=0,
                                                  validation_split=0.2)

    def cache(**key):
        return FeatureCache(tmp_path / "cache", {"backbone": SMALL_BACKBONE, "size": SMALL_SIZE, **key})

    return root, load, extractor, cache


def test_cache_hit_miss_and_per_file_invalidation(extraction):
    root, load, extractor, cache = extraction
    bundle = load()
    cold = split_features(bundle, "train", extractor, 4, cache=cache())
    assert (cold.extracted, cold.cached) == (12, 0)
    memory = split_features(bundle, "train", extractor, 4)  # no cache: the reference
    np.testing.assert_allclose(cold.features, memory.features, atol=1e-6)
    np.testing.assert_array_equal(cold.labels, memory.labels)

    warm = split_features(load(), "train", extractor, 4, cache=cache())  # a fresh process's view
    assert (warm.extracted, warm.cached) == (12 - 12, 12)
    np.testing.assert_array_equal(warm.features, cold.features)

    changed = root / "train" / "bee" / "bee_0.jpg"
    make_image(changed, 2, np.random.default_rng(99))  # new content, same name
    make_image(root / "train" / "cat" / "cat_new.jpg", 2, np.random.default_rng(5))  # an added file
    bundle = load()
    again = split_features(bundle, "train", extractor, 4, cache=cache())
    assert (again.extracted, again.cached) == (2, 11)
    files = bundle.splits["train"].files
    i = files.index(str(changed))
    reference = split_features(bundle, "train", extractor, 4)
    np.testing.assert_allclose(again.features, reference.features, atol=1e-6)
    # bee_0 keeps its position (the added file sorts after it); random-weight features are
    # tiny, so compare relative to their size.
    assert not np.allclose(again.features[i], cold.features[i], rtol=1e-3, atol=0)

    other = split_features(bundle, "train", extractor, 4, cache=cache(size=64))
    assert other.cached == 0  # another extractor key: nothing shared


def test_content_hash_not_name_keys_the_cache(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    make_image(a, 0, np.random.default_rng(1))
    b.write_bytes(a.read_bytes())
    assert file_sha256(a) == file_sha256(b)
    make_image(b, 0, np.random.default_rng(2))
    assert file_sha256(a) != file_sha256(b)


def test_augmented_copies_are_extracted_once_and_cached(extraction):
    _, load, extractor, cache = extraction
    first = split_features(load(), "train", extractor, 4, copies=2, seed=1, cache=cache())
    assert first.features.shape[0] == 36 and (first.extracted, first.cached) == (36, 0)
    np.testing.assert_array_equal(first.labels, np.tile(first.labels[:12], 3))
    assert not np.allclose(first.features[:12], first.features[12:24], rtol=1e-3, atol=0)  # augmented differ from clean
    second = split_features(load(), "train", extractor, 4, copies=2, seed=1, cache=cache())
    assert (second.extracted, second.cached) == (0, 36)
    val = split_features(load(), "validation", extractor, 4, copies=2, seed=1, cache=cache())
    assert val.features.shape[0] == 6  # validation is never augmented


def test_run_with_augment_copies_trains_on_k_plus_one_copies(small_config):
    result = clf.run(small_config(augment=True, augment_copies=2))
    assert result.extraction["train"] == {"extracted": 45, "cached": 0}  # 15 images x 3


def test_early_stopping_restores_the_best_epoch(small_config):
    result = clf.run(small_config(epochs=12, patience=2, lr=0.05))
    best = min(result.history["val_loss"])
    assert result.metrics["validation_loss"] == pytest.approx(best, rel=1e-4, abs=1e-6)
