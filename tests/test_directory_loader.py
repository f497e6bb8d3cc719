import pytest

from clf import DataError
from clf.plugins.directory_loader import load_directory
from conftest import make_folder


def _load(root, **kw):
    return load_directory(root, image_size=(24, 24), seed=kw.pop("seed", 1), validation_split=kw.pop("split", 0.34))


def test_class_folders_get_a_stratified_seeded_split(image_folder):
    (image_folder / "ant" / ".DS_Store").write_bytes(b"\0junk")
    (image_folder / "bee" / "notes.txt").write_text("not an image")
    b = _load(image_folder)
    assert b.class_names == ["ant", "bee", "cat"]
    assert b.counts("train") == {"ant": 4, "bee": 4, "cat": 4}
    assert b.counts("validation") == {"ant": 2, "bee": 2, "cat": 2}
    assert not set(b.splits["train"].files) & set(b.splits["validation"].files)
    assert b.splits == _load(image_folder).splits  # same seed, same split
    assert b.splits["validation"].files != _load(image_folder, seed=7).splits["validation"].files
    images = list(b.train.take(2))
    assert images[0][0].shape == (24, 24, 3) and images[0][0].dtype.name == "float32"
    assert float(images[0][0].numpy().max()) > 100  # raw 0-255, not rescaled


@pytest.mark.parametrize("train_name,val_name", [("train", "val"), ("entrenamiento", "validacion"),
                                                 ("Training", "Validation")])
def test_train_val_folders_are_recognised(tmp_path, train_name, val_name):
    root = make_folder(tmp_path / "d", split_dirs=True)
    (root / "train").rename(root / train_name)
    (root / "val").rename(root / val_name)
    b = _load(root)
    assert b.counts("train") == {"ant": 6, "bee": 6, "cat": 6}
    assert b.counts("validation") == {"ant": 2, "bee": 2, "cat": 2}
    labels = [int(y) for _, y in b.validation]
    assert labels == [0, 0, 1, 1, 2, 2]


def test_test_folder_is_loaded(split_folder):
    make_folder(split_folder / "test", per_class=1, seed=3)
    b = _load(split_folder)
    assert b.counts("test") == {"ant": 1, "bee": 1, "cat": 1} and b.test is not None


def test_errors_say_what_and_how(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        _load(tmp_path / "missing")
    make_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(DataError, match="1 class folder"):
        _load(tmp_path / "one")
    root = make_folder(tmp_path / "e")
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="'empty'.*no images"):
        _load(root)
    root = make_folder(tmp_path / "s", per_class=1)
    with pytest.raises(DataError, match="at least 2 per class"):
        _load(root)
    root = make_folder(tmp_path / "v", split_dirs=True)
    make_folder(root / "val", classes=("zebra",), per_class=1)
    with pytest.raises(DataError, match="'zebra'"):
        _load(root)
