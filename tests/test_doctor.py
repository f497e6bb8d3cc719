"""The dataset doctor on every kind of bad file, and `clf run` on a folder full of them."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import clf
from bad_files import make_messy_folder
from clf.cli import app
from clf.data.doctor import QUARANTINE_FILE, examine
from conftest import SMALL_BACKBONE, SMALL_SIZE, make_folder

runner = CliRunner()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLF_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def messy(tmp_path):
    return make_messy_folder(tmp_path / "messy")


def test_every_bad_kind_is_found_with_its_reason(messy):
    root, bad, conv, good = messy
    report = examine(root)
    found = {b.path: b for b in report.quarantined}
    assert {p: b.kind for p, b in found.items()} == bad
    assert all(b.reason for b in found.values())
    assert "0 bytes" in found[str(root / "ant" / "zero.jpg")].reason
    assert "truncated" in found[str(root / "ant" / "truncated.jpg")].reason
    assert "two labels" in found[str(root / "bee" / "ant_1_again.jpg")].reason
    converted = {c.path: c for c in report.converted}
    assert set(converted) == set(conv)
    for path, word in conv.items():
        assert any(word.lower() in ch.lower() for ch in converted[path].changes), (path, converted[path].changes)
        assert Path(converted[path].copy).is_file()
    per_class = {c: sum(1 for p in [*good, *conv] if Path(p).parent.name == c) for c in ("ant", "bee")}
    assert report.counts == {"train": per_class} == {"train": {"ant": 6 + 3, "bee": 6 + 5}}
    assert [b.path for b in report.bad if b.kind == "system"] == []


def test_converted_copies_are_plain_rgb_and_right(messy):
    root, _, _, _ = messy
    copies = {Path(c.path).name: Image.open(c.copy) for c in examine(root).converted}
    assert all(im.mode == "RGB" and im.format == "PNG" for im in copies.values())
    assert copies["rotated.jpg"].size == (48, 40)  # 40x48 stored, EXIF says rotate 90
    deep = np.asarray(copies["deep16.png"])
    assert deep.max() >= 250 and deep.min() <= 5  # 16-bit range scaled, not clipped to white
    alpha = np.asarray(copies["alpha.png"]).astype(int)
    assert alpha.min() >= 120  # half-transparent dark pixels over white, not over black


def test_cross_split_duplicate_is_a_leak(tmp_path):
    root = make_folder(tmp_path / "d", split_dirs=True)
    leaked = root / "val" / "bee" / "from_train.jpg"
    leaked.write_bytes((root / "train" / "bee" / "bee_3.jpg").read_bytes())
    report = examine(root)
    (item,) = report.quarantined
    assert item.path == str(leaked) and item.kind == "leak" and item.split == "validation"
    assert "train" in item.reason and "inflates" in item.reason


def test_imbalance_is_noted(tmp_path):
    root = make_folder(tmp_path / "d", classes=("big", "small"), per_class=2)
    make_folder(root, classes=("big",), per_class=9, seed=5)
    for i, p in enumerate(sorted((root / "big").glob("*.jpg"))):
        p.rename(p.with_name(f"x{i}.jpg"))
    make_folder(root, classes=("big",), per_class=2, seed=9)
    report = examine(root)
    assert report.imbalance() > 3 and any("imbalanced" in n for n in report.notes)


@pytest.fixture(scope="module")
def messy_run(tmp_path_factory):
    """`clf run` on a messy folder, once for the two tests that read it."""
    root = tmp_path_factory.mktemp("messy-run")
    messy = make_messy_folder(root / "messy")
    out = root / "run"
    res = runner.invoke(app, ["run", "--backbone", SMALL_BACKBONE, "--data", str(messy[0]), "--epochs", "1",
                              "--batch-size", "4", "--image-size", str(SMALL_SIZE), "--weights", "none",
                              "--output", str(out), "--no-augment"])
    return messy, out, res


def test_clf_run_on_a_folder_full_of_bad_files(messy_run):
    """Exit 0; quarantine.json names each bad file with its reason; all good files used."""
    (root, bad, conv, good), out, res = messy_run
    assert res.exit_code == 0, res.output
    assert "quarantined" in res.output
    record = json.loads((out / QUARANTINE_FILE).read_text())
    listed = {q["path"]: q for q in record["quarantined"]}
    assert set(listed) == set(bad)
    assert all(q["kind"] == bad[p] and q["reason"] for p, q in listed.items())
    assert {c["path"] for c in record["converted"]} == set(conv)
    assert sum(record["counts"]["train"].values()) == len(good) + len(conv)


def test_run_uses_every_good_and_converted_file(messy_run):
    (root, bad, conv, good), out, res = messy_run
    assert res.exit_code == 0, res.output
    # What the run trained and validated on (the run's counts, recorded in its manifest).
    counts = json.loads((out / "manifest.json").read_text())["class_counts"]
    assert sum(sum(c.values()) for c in counts.values()) == len(good) + len(conv)


def test_strict_data_makes_bad_files_an_error(messy, small_config):
    root, bad, _, _ = messy
    with pytest.raises(clf.DataError, match="--strict-data: 9 bad file") as info:
        clf.run(small_config(data=str(root), strict_data=True))
    assert "zero.jpg" in str(info.value) and "drop --strict-data" in str(info.value)


def test_strict_data_tolerates_system_files(image_folder, small_config):
    (image_folder / "ant" / ".DS_Store").write_bytes(b"\0junk")
    result = clf.run(small_config(strict_data=True))
    assert sum(result.counts["train"].values()) + sum(result.counts["validation"].values()) == 18


def test_a_class_left_empty_by_quarantine_is_a_clear_error(tmp_path, small_config):
    root = make_folder(tmp_path / "d", classes=("ant", "bee"))
    for p in (root / "bee").glob("*.jpg"):
        p.write_bytes(b"")
    (root / "bee" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(clf.DataError, match="Class 'bee' has no usable training images"):
        clf.run(small_config(data=str(root)))


def test_doctor_command_table_json_and_strict(messy):
    root, bad, conv, _ = messy
    res = runner.invoke(app, ["doctor", str(root)])
    assert res.exit_code == 0, res.output
    assert "to quarantine" in res.output and "converted for training" in res.output and "imbalance" in res.output
    data = json.loads(runner.invoke(app, ["doctor", str(root), "--json"]).output)
    assert {q["path"] for q in data["quarantined"]} == set(bad)
    assert all(c["copy"] is None for c in data["converted"])  # doctor alone writes nothing
    assert runner.invoke(app, ["doctor", str(root), "--strict-data"]).exit_code == 1
    assert runner.invoke(app, ["doctor", str(root / "nope")]).exit_code == 2  # a path that is not there


def test_of_two_copies_the_plainest_name_is_kept(tmp_path):
    root = make_folder(tmp_path / "d", classes=("cat", "dog"), per_class=3)
    photo = (root / "dog" / "dog_0.jpg").read_bytes()
    (root / "dog" / "dog_0.jpg").rename(root / "dog" / "dog.84(1).jpg")  # the copy sorts first by name
    for name in ("dog.84.jpg", "dog.84 copy.jpg", "Copy of dog.84.jpg"):
        (root / "dog" / name).write_bytes(photo)
    report = examine(root)
    left_out = sorted(Path(b.path).name for b in report.quarantined)
    assert left_out == ["Copy of dog.84.jpg", "dog.84 copy.jpg", "dog.84(1).jpg"]
    assert all("exact duplicate of " + str(root / "dog" / "dog.84.jpg") in b.reason for b in report.quarantined)


def test_imbalance_is_one_note_in_a_run_and_quarantine_json_named_once_written(tmp_path):
    root = make_folder(tmp_path / "d", classes=("ant", "bee"), per_class=4)
    make_folder(root, classes=("cat",), per_class=20, seed=7)
    (root / "ant" / "broken.jpg").write_bytes(b"not an image")
    args = ["run", "--data", str(root), "--backbone", SMALL_BACKBONE, "--weights", "none",
            "--image-size", str(SMALL_SIZE), "--epochs", "1", "--no-verify"]
    # The doctor's lines come before any run folder exists (a run may fail, a dry run writes
    # none): they name no quarantine.json; the run notes it once written.
    import io

    from rich.console import Console

    from clf.cli.render import make_observer

    buf = io.StringIO()
    make_observer(Console(file=buf, width=300), "plain").phase_end("doctor", report=examine(root))
    assert "quarantined 1 file(s)" in buf.getvalue() and QUARANTINE_FILE not in buf.getvalue()
    out = tmp_path / "run"
    res = runner.invoke(app, [*args, "--output", str(out)])
    said = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert said.count("imbalanced") == 1 and "--class-weight auto balances the class weights" in said
    assert f"{out / QUARANTINE_FILE} lists the 1 quarantined file(s)" in said and (out / QUARANTINE_FILE).is_file()
