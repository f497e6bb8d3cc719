"""``--export mediapipe``: a TFLite file with the metadata MediaPipe Tasks' ImageClassifier reads,
run in MediaPipe itself: its classes and scores are the model's, its known-score head apart,
its top-k and score threshold as the options ask. Needs the mediapipe extra."""

import json

import numpy as np
import pytest

import clf
from conftest import copy_run

pytest.importorskip("mediapipe.tasks.python.vision", reason="the mediapipe extra is not installed "
                    "(pip install 'clf[mediapipe]'; the test extra has it)")

from clf.plugins import mediapipe_exporter as mpx  # noqa: E402


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    run_dir = copy_run(trained_run, tmp_path_factory.mktemp("mediapipe") / "run")
    clf.export(run_dir, "mediapipe")
    return run_dir


def fitted_photos(run_dir, data, n=6):
    """Photos of the run's data decoded, cropped and resized by clf, rounded to 8 bits (what MediaPipe takes)."""
    labels = json.loads((run_dir / "labels.json").read_text())
    size = clf.ImageSize(labels["input_size"], float(labels["resize"]["center_crop"]))
    files = clf.collect_images(data)[:n]
    return np.round(clf.Decoder(size).batch(files)).astype(np.uint8), labels


def test_export_is_verified_in_mediapipe_and_listed(exported):
    labels = json.loads((exported / "labels.json").read_text())
    assert labels.get("unknown"), "the shared run has a known score: both heads are checked"
    assert labels["artifacts"]["mediapipe"] == [mpx.FILE_NAME]
    result = labels["verification"]["results"]["mediapipe"]
    assert result["passed"] and result["top1_agreement"] == 1.0
    # MediaPipe takes the fixed-size model: clf's preprocessing inside, 0-255 pixels in.
    assert labels["inputs"]["mediapipe"]["kind"] == "fixed"
    record = json.loads((exported / "verification.json").read_text())["results"]["mediapipe"]
    assert record["runtime"] == "mediapipe" and "rounded to 8 bits" in record["criterion"]
    assert record["max_abs_diff"] <= 1e-4  # the model inside MediaPipe is the model


def test_mediapipe_gives_the_models_outputs_on_the_same_8_bit_image(exported, trained_run):
    images, labels = fitted_photos(exported, trained_run.data)
    keras = clf.load_predictor(exported, fmt="h5").predict_batch(images.astype(np.float32))
    classifier = mpx.open_classifier(exported / mpx.FILE_NAME)
    known = bool(labels.get("unknown"))
    got = np.stack([mpx.result_outputs(mpx.classify(classifier, image), len(labels["class_names"]), known)
                    for image in images])
    assert np.abs(got - keras).max() <= 1e-4
    result = mpx.classify(classifier, images[0])
    heads = [(h.head_index, h.head_name) for h in result.classifications]
    assert heads == [(0, "probabilities"), *([(1, "known_score")] if known else [])]
    assert sorted(c.category_name for c in result.classifications[0].categories) == sorted(labels["class_names"])
    if known:  # the known score is its own head, never one of the class head's categories
        assert [c.category_name for c in result.classifications[1].categories] == ["known_score"]


def test_top_k_and_score_threshold_options(exported, trained_run):
    images, labels = fitted_photos(exported, trained_run.data, n=1)
    full = mpx.classify(mpx.open_classifier(exported / mpx.FILE_NAME), images[0]).classifications[0].categories
    scores = sorted((c.score for c in full), reverse=True)
    top1 = mpx.classify(mpx.open_classifier(exported / mpx.FILE_NAME, max_results=1), images[0])
    assert [c.score for c in top1.classifications[0].categories] == pytest.approx(scores[:1])
    threshold = (scores[0] + scores[1]) / 2
    kept = mpx.classify(mpx.open_classifier(exported / mpx.FILE_NAME, score_threshold=threshold), images[0])
    assert [c.score for c in kept.classifications[0].categories] == pytest.approx(scores[:1])


def test_metadata_names_the_classes_and_the_normalisation(exported):
    from mediapipe.tasks.python.metadata import metadata as mp_metadata

    displayer = mp_metadata.MetadataDisplayer.with_model_file(str(exported / mpx.FILE_NAME))
    meta = json.loads(displayer.get_metadata_json())
    image = meta["subgraph_metadata"][0]["input_tensor_metadata"][0]
    assert image["process_units"][0]["options"] == {"mean": [0.0], "std": [1.0]}
    labels = json.loads((exported / "labels.json").read_text())
    assert displayer.get_associated_file_buffer("labels.txt").decode().split() == labels["class_names"]


def test_clf_verify_rechecks_it_in_mediapipe(exported):
    from typer.testing import CliRunner

    from clf.cli import app

    done = CliRunner().invoke(app, ["verify", str(exported / mpx.FILE_NAME)])
    assert done.exit_code == 0, done.output
    assert "ok mediapipe" in done.output and "rounded to 8 bits" in done.output
