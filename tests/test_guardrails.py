"""Small-data and output-folder guardrails, and atomic artifacts."""

import os

import numpy as np
import pytest

import clf
from clf import DataError, UsageError
from clf.plugins.h5_exporter import export_h5
from conftest import copy_run, make_folder


def test_empty_data_folder_is_a_clear_error(tmp_path, small_config):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty; expected one folder of images per class"):
        clf.run(small_config(data=str(tmp_path / "empty")))


def test_batch_larger_than_the_data_is_shrunk_with_a_note(small_config):
    obs = clf.RecordingObserver()
    result = clf.run(small_config(batch_size=64), obs)
    assert any("--batch-size 64 is larger than the 15 training images; using 15" in n for n in obs.notes())
    assert len(result.history["loss"]) == 1


def test_existing_output_needs_force_and_force_replaces_only_a_run(small_config, tmp_path, trained_run):
    first = copy_run(trained_run, tmp_path / "run")  # a finished run where small_config writes
    with pytest.raises(UsageError, match="already exists and is not empty.*--force"):
        clf.run(small_config())
    (first / "stale.txt").write_text("from the old run")
    second = clf.run(small_config(force=True))
    assert second.run_dir == first and not (second.run_dir / "stale.txt").exists()
    assert (second.run_dir / "model.h5").is_file()
    other = tmp_path / "photos_backup"
    other.mkdir()
    (other / "precious.jpg").write_bytes(b"x")
    with pytest.raises(UsageError, match="not a clf run folder"):
        clf.run(small_config(output=str(other), force=True))
    assert (other / "precious.jpg").exists()


def test_unusable_output_fails_before_training(small_config, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    obs = clf.RecordingObserver()
    with pytest.raises(UsageError, match="is a file"):
        clf.run(small_config(output=str(blocker / "run")), obs)
    assert not any(e[0] == "phase_start" and e[1] == "train" for e in obs.events)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere; permissions cannot be tested as root")
def test_read_only_output_folder(small_config, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(UsageError, match="not writable"):
        clf.run(small_config(output=str(ro / "run")))


def test_kill_during_export_keeps_the_previous_artifact(trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    model_file = run_dir / "model.h5"
    before = model_file.read_bytes()

    class Killed(BaseException):
        pass

    class Dying:
        """Writes half a file and dies, as a process killed mid-save would."""

        def save(self, path):
            with open(path, "wb") as f:
                f.write(before[: len(before) // 2])
            raise Killed

        save_weights = save

    with pytest.raises(Killed):
        export_h5(Dying(), run_dir, {})
    assert model_file.read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".tmp")) == []
    predictor = clf.load_predictor(run_dir)
    assert predictor.predict_batch(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 4)  # 3 classes, known score


def test_output_beside_a_fifo_named_labels_json_is_checked_without_waiting_on_it(tmp_path):
    import threading

    from clf.data.guardrails import check_output_file, claim_run_dir

    run = tmp_path / "run"
    run.mkdir()
    claim_run_dir(run)
    os.mkfifo(run / "labels.json")
    answer: list = []
    worker = threading.Thread(target=lambda: answer.append(check_output_file(run / "new.csv")), daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "check_output_file waited on a FIFO named labels.json"
    assert answer == [(run / "new.csv").resolve()]
