"""Models saved before the core/ restructuring still load and predict what they predicted.

tests/fixtures/legacy_run/ was written by the pre-restructuring code (commit f4d663b, see
tests/fixtures/make_legacy_run.py): one run in every export format plus a full-int8 TFLite
model, the images predicted on and the probabilities the old code gave. Loading them with
the current code guards the Keras-registered layer names (``clf>Preprocess``,
``clf>Standardize``), the preprocessing mode names, the ``clf-labels/1`` record and each
exporter's file layout.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import clf

LEGACY = Path(__file__).parent / "fixtures" / "legacy_run"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())
INPUTS = [LEGACY / "inputs" / name for name in EXPECTED["inputs"]]
RUNTIMES = {"h5": "keras", "keras": "keras", "savedmodel": "tf.saved_model", "tflite": "tflite",
            "onnx": "onnxruntime"}
ARTIFACTS = [("bundle", name) for name in EXPECTED["predict_files"]["bundle"]] + [("tflite_int8", "tflite")]
TOLERANCE = 1e-5


def _artifact(folder: str, exporter: str) -> Path:
    labels = json.loads((LEGACY / folder / "labels.json").read_text())
    return LEGACY / folder / labels["artifacts"][exporter][0]


def test_fixture_was_made_by_the_old_code_in_every_format():
    assert EXPECTED["clf_commit"].startswith("f4d663b")
    assert set(EXPECTED["predict_files"]["bundle"]) == set(RUNTIMES)
    labels = json.loads((LEGACY / "bundle" / "labels.json").read_text())
    assert labels["format"] == "clf-labels/1" and labels["preprocessing"]["mode"] == "vgg16"
    # The old code's predictions are not degenerate, so agreeing with them means something.
    probs = np.array(EXPECTED["predict_files"]["bundle"]["h5"])
    assert probs.argmax(axis=1).tolist() == [0, 1, 2, 0, 1, 2] and probs.max() > 0.7


@pytest.mark.parametrize("folder,exporter", ARTIFACTS, ids=[f"{f}-{e}" for f, e in ARTIFACTS])
def test_legacy_artifact_predicts_what_the_old_code_predicted(folder, exporter):
    # An older clf recorded no sha256, so opening it takes the user's word (--trust-artifact).
    with pytest.raises(clf.ModelError, match="--trust-artifact"):
        clf.load_predictor(_artifact(folder, exporter))
    predictor = clf.load_predictor(_artifact(folder, exporter), trust=True)
    assert predictor.runtime.replace("litert", "tflite") == RUNTIMES[exporter]
    assert predictor.class_names == ["ant", "bee", "cat"]
    assert predictor.quantization == ("int8" if folder == "tflite_int8" else "none")
    expected = np.array(EXPECTED["predict_files"][folder][exporter])

    # Through clf's decoding (centre crop 0.875 from labels.json, then resize) ...
    results = clf.predict_files(predictor, INPUTS, batch_size=4)
    assert [r.error for r in results] == [None] * len(INPUTS)
    np.testing.assert_allclose([r.probabilities for r in results], expected, rtol=0, atol=TOLERANCE)
    # ... and on the batch exactly as the old code decoded it.
    decoded = np.load(LEGACY / "decoded.npy")
    np.testing.assert_allclose(predictor.predict_batch(decoded), expected, rtol=0, atol=TOLERANCE)


def test_legacy_bundle_folder_opens_its_first_artifact():
    predictor = clf.load_predictor(LEGACY / "bundle", trust=True)
    assert predictor.path.name == "model.h5" and predictor.runtime == "keras"


def test_legacy_keras_files_load_with_plain_keras_after_importing_clf():
    """In a fresh interpreter, so nothing else has registered clf's layers yet: importing
    ``clf.preprocessing`` (the module the saved configs name) is all a user needs."""
    script = (
        "import json, sys, numpy as np, keras\n"
        "import clf, clf.preprocessing\n"
        "def walk(layer):\n"  # the Standardize layer sits inside the nested head model
        "    for sub in getattr(layer, 'layers', []):\n"
        "        yield sub\n"
        "        yield from walk(sub)\n"
        "x = np.load(sys.argv[1])\n"
        "out = {}\n"
        "for path in sys.argv[2:]:\n"
        "    model = keras.models.load_model(path, compile=False)\n"
        "    ours = [l for l in walk(model) if type(l).__module__.startswith('clf.')]\n"
        "    out[path] = {'probs': model.predict(x, verbose=0).tolist(),\n"
        "                 'registered': sorted(keras.saving.get_registered_name(type(l)) for l in ours)}\n"
        "print(json.dumps(out))\n"
    )
    paths = [str(_artifact("bundle", "h5")), str(_artifact("bundle", "keras"))]
    done = subprocess.run([sys.executable, "-c", script, str(LEGACY / "decoded.npy"), *paths],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for exporter, path in zip(("h5", "keras"), paths):
        assert sorted(out[path]["registered"]) == ["clf>Preprocess", "clf>Standardize"], out[path]
        np.testing.assert_allclose(out[path]["probs"], EXPECTED["keras_direct"][exporter], rtol=0, atol=TOLERANCE)
