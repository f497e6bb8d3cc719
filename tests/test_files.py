"""clf.files: atomic writes (files and folders), JSON, file hashes, cache folders."""

import hashlib
import json
from pathlib import Path

import pytest

from conftest import make_folder
from clf.files import atomic_path, cache_dir, file_hash, keras_cache_dir, write_bytes, write_json, write_text


class Boom(Exception):
    pass


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_text(tmp_path / "model.h5", "old")
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".h5" and tmp.name.startswith(".")
            tmp.write_bytes(b"half a mod")
            raise Boom
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.h5"]


def test_a_failed_first_write_creates_nothing(tmp_path):
    with pytest.raises(Boom):
        with atomic_path(tmp_path / "labels.json") as tmp:
            tmp.write_text("{")
            raise Boom
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "saved_model"
    with atomic_path(target) as tmp:
        (tmp / "variables").mkdir(parents=True)
        (tmp / "saved_model.pb").write_bytes(b"v1")
        (tmp / "variables" / "data").write_bytes(b"w1")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "saved_model.pb").write_bytes(b"v2")
    assert sorted(p.name for p in target.iterdir()) == ["saved_model.pb"]
    assert (target / "saved_model.pb").read_bytes() == b"v2"
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "saved_model.pb").write_bytes(b"v3")
            raise Boom
    assert (target / "saved_model.pb").read_bytes() == b"v2"
    assert [p.name for p in tmp_path.iterdir()] == ["saved_model"]


def test_write_bytes_replaces_the_content(tmp_path):
    path = write_bytes(tmp_path / "a.bin", b"one")
    write_bytes(path, b"two")
    assert path.read_bytes() == b"two" and len(list(tmp_path.iterdir())) == 1


def test_json_round_trip(tmp_path):
    data = {"format": "clf-labels/1", "class_names": ["ant", "bee", "é"], "n": 3, "x": 0.5,
            "nested": {"none": None, "list": [1, 2]}}
    path = write_json(tmp_path / "labels.json", data)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == data
    assert text.endswith("}\n") and text.startswith('{\n  "format"')  # indented, final newline
    assert json.loads(write_json(tmp_path / "p.json", {"path": Path("a/b")}).read_text()) == {"path": "a/b"}


def test_file_hash_of_known_content(tmp_path):
    abc = write_bytes(tmp_path / "abc", b"abc")
    assert file_hash(abc) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_hash(abc, "md5") == "900150983cd24fb0d6963f7d28e17f72"
    big = bytes(range(256)) * 12_000  # several read chunks
    path = write_bytes(tmp_path / "big", big)
    assert file_hash(path) == hashlib.sha256(big).hexdigest()
    assert file_hash(path, "blake2b", digest_size=16) == hashlib.blake2b(big, digest_size=16).hexdigest()


def test_cache_dir_honours_clf_cache_dir_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CLF_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("features") == tmp_path / "mine" / "features"
    monkeypatch.delenv("CLF_CACHE_DIR")
    assert cache_dir("converted") == tmp_path / "xdg" / "clf" / "converted"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("features") == tmp_path / "home" / ".cache" / "clf" / "features"


def test_the_feature_cache_and_the_doctor_follow_the_one_rule(tmp_path, monkeypatch):
    from PIL import Image

    from clf.data.doctor import examine
    from clf.train.feature_cache import default_cache_dir

    data = make_folder(tmp_path / "data", per_class=2)
    Image.new("L", (32, 32), 128).save(data / "ant" / "gray.png")  # the doctor converts it
    monkeypatch.delenv("CLF_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "clf" / "features"
    [conversion] = examine(data).converted
    assert Path(conversion.copy).parent == tmp_path / "xdg" / "clf" / "converted"


def test_keras_cache_dir_follows_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "k"))
    assert keras_cache_dir() == tmp_path / "k" / "models"
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert keras_cache_dir() == tmp_path / "home" / ".keras" / "models"
