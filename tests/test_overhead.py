"""Work a run no longer repeats: each file hashed once, Pillow's findings kept across runs,
one trace of a model serves every batch size."""

import os

import numpy as np
import pytest

from clf import files
from clf.data import doctor
from conftest import make_folder


def test_the_doctor_hashes_each_file_for_the_whole_run(tmp_path):
    root = make_folder(tmp_path / "data", per_class=2)
    doctor.examine(root)
    photo = next(root.rglob("*.jpg"))
    hashed = files.file_sha256(photo)
    stat = photo.stat()
    data = photo.read_bytes()
    photo.write_bytes(bytes(reversed(data)))  # same size; put the time stamp back
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert files.file_sha256(photo) == hashed  # not read again: the doctor's hash is reused
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert files.file_sha256(photo) != hashed  # a changed time stamp is a changed file


def test_a_warm_doctor_decodes_nothing(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "data", per_class=3)
    (root / "ant" / "notes.txt").write_text("not an image")
    first = doctor.examine(root)
    assert doctor.facts_path().is_file()

    def no_decoding(data):
        raise AssertionError("decoded again")

    monkeypatch.setattr(doctor, "pillow_facts", no_decoding)
    second = doctor.examine(root)
    assert second.to_dict() == first.to_dict()
    assert [b.kind for b in second.quarantined] == ["not_image"]


def test_every_batch_size_goes_through_one_trace_and_gives_the_same_rows():
    import keras

    from clf.infer import forward

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    whole = forward.predict(model, x)
    np.testing.assert_allclose(forward.predict(model, x[:2]), whole[:2], atol=1e-7)
    assert forward.forward_fn(model).experimental_get_tracing_count() == 1
    np.testing.assert_allclose(whole, np.asarray(model(x)), atol=1e-6)
