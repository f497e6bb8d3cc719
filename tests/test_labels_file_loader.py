"""The labels-file loader (--data labels.csv / .jsonl): rows, task, splits and clear errors."""

import json

import numpy as np
import pytest
from PIL import Image

from clf import DataError, RunConfig
from clf.data.doctor import examine_labels_file
from clf.data.labels_file import read_labels_file, resolve_task
from clf.plugins.labels_file_loader import load_labels_file


def make_shapes(root, rows, size=32, seed=0):
    """Synthetic multi-label images: label k draws a coloured square in corner k. ``rows``: label
    tuples, one image each. Returns the relative paths."""
    palette = [(230, 40, 40), (40, 230, 40), (40, 40, 230), (230, 230, 40)]
    names = ["red", "green", "blue", "yellow"]
    rng = np.random.default_rng(seed)
    paths = []
    for i, labels in enumerate(rows):
        img = rng.integers(0, 50, size=(size, size, 3), dtype=np.uint8)
        for label in labels:
            k = names.index(label)
            y, x = (k // 2) * size // 2, (k % 2) * size // 2
            img[y:y + size // 2, x:x + size // 2] = palette[k]
        rel = f"img/{i:03d}.png"
        (root / "img").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / rel)
        paths.append(rel)
    return paths


def write_csv(root, paths, rows, name="labels.csv", extra=None):
    lines = ["path,labels" + (",split" if extra else "")]
    for i, (p, labels) in enumerate(zip(paths, rows)):
        lines.append(f"{p},{';'.join(labels)}" + (f",{extra[i]}" if extra else ""))
    (root / name).write_text("\n".join(lines) + "\n")
    return root / name


def _load(path, **kw):
    return load_labels_file(path, image_size=(24, 24), seed=kw.pop("seed", 1), validation_split=0.3, **kw)


MULTI = [("red",), ("green",), ("red", "green"), ("blue",), ("red", "blue"), ("green", "blue")] * 3


def test_multilabel_csv_loads_targets_and_a_seeded_split(tmp_path):
    path = write_csv(tmp_path, make_shapes(tmp_path, MULTI), MULTI)
    b = _load(path)
    assert b.task == "multilabel" and b.multilabel and b.class_names == ["blue", "green", "red"]
    train, val = b.splits["train"], b.splits["validation"]
    assert len(train) + len(val) == len(MULTI) and not set(train.files) & set(val.files)
    assert all(isinstance(t, tuple) for t in train.targets)
    y = train.multi_hot(3)
    assert y.shape == (len(train), 3) and set(np.unique(y)) == {0.0, 1.0}
    assert b.counts("train")["red"] == int(y[:, 2].sum())
    assert _load(path).splits == b.splits  # same seed, same split
    image, label = next(iter(b.train))
    assert image.shape == (24, 24, 3) and float(image.numpy().max()) > 100


def test_jsonl_and_single_label_rows(tmp_path):
    rows = [("red",), ("green",)] * 3
    paths = make_shapes(tmp_path, rows)
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(json.dumps({"path": p, "labels": list(r)}) for p, r in zip(paths, rows)))
    b = _load(path)
    assert b.task == "single" and b.splits["train"].targets is None
    assert b.class_names == ["green", "red"]
    assert resolve_task("auto", read_labels_file(path)) == "single"


def test_split_column_is_kept(tmp_path):
    rows = [("red",), ("green",)] * 3
    splits = ["train", "train", "train", "train", "val", "val"]
    path = write_csv(tmp_path, make_shapes(tmp_path, rows), rows, extra=splits)
    b = _load(path)
    assert len(b.splits["train"]) == 4 and len(b.splits["validation"]) == 2


def test_unknown_paths_are_named(tmp_path):
    rows = [("red",), ("green",)] * 2
    paths = make_shapes(tmp_path, rows)
    paths[1] = "img/missing.png"
    path = write_csv(tmp_path, paths, rows)
    with pytest.raises(DataError, match=r"not files: line 3: .*missing\.png"):
        _load(path)


def test_empty_label_sets_need_task_multilabel(tmp_path):
    rows = [("red",), ("green",), ("red", "green"), ()] * 2
    path = write_csv(tmp_path, make_shapes(tmp_path, rows), rows)
    with pytest.raises(DataError, match=r"2 row\(s\) without labels .*--task multilabel"):
        _load(path)
    b = _load(path, task="multilabel")
    assert () in b.splits["train"].targets + b.splits.get("validation", b.splits["train"]).targets


def test_a_label_seen_once_is_an_error(tmp_path):
    rows = [("red",), ("green",), ("red",), ("green",), ("gren",)]
    (tmp_path / "img").mkdir()
    paths = make_shapes(tmp_path, [("red",)] * 5)
    path = write_csv(tmp_path, paths, rows)
    with pytest.raises(DataError, match="seen on one image only: 'gren'"):
        _load(path)


def test_task_single_refuses_two_labels(tmp_path):
    rows = [("red", "green"), ("red",), ("green",)] * 2
    path = write_csv(tmp_path, make_shapes(tmp_path, rows), rows)
    with pytest.raises(DataError, match="--task single"):
        _load(path, task="single")


def test_missing_header_is_explained(tmp_path):
    (tmp_path / "labels.csv").write_text("a.png,red\n")
    with pytest.raises(DataError, match="expected a header with 'path' and 'labels'"):
        read_labels_file(tmp_path / "labels.csv")


def test_doctor_quarantines_bad_rows(tmp_path):
    rows = [("red",), ("green",), ("red", "green")] * 3
    paths = make_shapes(tmp_path, rows)
    (tmp_path / paths[0]).write_bytes(b"not an image")
    path = write_csv(tmp_path, paths, rows)
    report = examine_labels_file(path, facts_file=None, target_dir=tmp_path / "conv")
    assert [b.kind for b in report.quarantined] == ["not_image"]
    assert report.counts["train"] == {"green": 6, "red": 5}
    b = _load(path, skip=report.skip)
    assert str(tmp_path / paths[0]) not in b.splits["train"].files + b.splits["validation"].files


def test_run_config_task_and_loader_choice(tmp_path):
    from clf.host.manager import get_host
    from clf.train.setup import loader_name

    assert RunConfig(task="MultiLabel").task == "multilabel"
    with pytest.raises(Exception, match="task"):
        RunConfig(task="multi")
    config = RunConfig(data=str(tmp_path / "labels.csv"))
    assert loader_name(config) == "labels_file"
    assert get_host(()).loaders.get("labels_file").name == "labels_file"


def test_a_single_label_run_from_a_labels_file(tmp_path):
    import clf
    from conftest import SMALL_BACKBONE, SMALL_SIZE

    rows = [("red",), ("green",), ("blue",)] * 4
    path = write_csv(tmp_path, make_shapes(tmp_path, rows), rows)
    result = clf.run(backbone=SMALL_BACKBONE, data=str(path), weights="none", image_size=SMALL_SIZE,
                     output=str(tmp_path / "run"), augment=False, verify=False, unknown="off")
    labels = json.loads((result.run_dir / "labels.json").read_text())
    assert "task" not in labels and labels["class_names"] == ["blue", "green", "red"]
    assert "accuracy" in result.evaluation["validation"]
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    listed = [f for per_class in manifest["split"]["train"].values() for f in per_class]
    assert listed and all(f.startswith("img/") for f in listed)  # relative to the labels file's folder
