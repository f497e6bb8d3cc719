"""Run with the plugin installed: ``pip install . && python -m pytest tests``."""

import numpy as np
import pytest
from PIL import Image

import clf


def _manifest(tmp_path, rows):
    for path, *_ in rows:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / path)
    lines = ["path,label,split"] + [",".join(r) for r in rows]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "m.csv"


def test_csv_loader_is_registered_by_this_package():
    host = clf.PluginHost()
    loader = host.loaders.get("csv")
    assert host.infos[loader.plugin].distribution == "clf-csv-loader"


def test_csv_loader_reads_splits_and_relative_paths(tmp_path):
    import clf_csv_loader

    csv = _manifest(tmp_path, [("img/a1.png", "cat", "train"), ("img/a2.png", "cat", ""),
                               ("img/b1.png", "dog", "train"), ("img/b2.png", "dog", "val")])
    bundle = clf_csv_loader.load_csv(csv, image_size=(4, 4), seed=0, validation_split=0.2)
    assert bundle.class_names == ["cat", "dog"]
    assert bundle.splits["train"].labels == [0, 0, 1] and bundle.splits["validation"].labels == [1]
    image, label = next(iter(bundle.validation))
    assert image.shape == (4, 4, 3) and int(label) == 1


def test_csv_loader_names_the_bad_row(tmp_path):
    import clf_csv_loader

    csv = _manifest(tmp_path, [("a.png", "cat", "train")])
    csv.write_text(csv.read_text() + "missing.png,dog,train\n")
    with pytest.raises(clf.DataError, match="m.csv line 3 names 'missing.png'"):
        clf_csv_loader.load_csv(csv, image_size=(4, 4), seed=0, validation_split=0.2)
