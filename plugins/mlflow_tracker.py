"""The MLflow tracker, on with ``--track mlflow`` (``pip install 'clf[mlflow]'``): the run's
parameters, Keras fit's epoch metrics, the evaluation and --folds scores, the wall time of
each phase, the run folder as artifacts, and the model as an MLflow pyfunc model that wraps
clf's own predictor (plugins/mlflow_pyfunc.py). Tracks to ``$MLFLOW_TRACKING_URI``, else
``./mlruns`` (MLflow's file store; MLflow 3 wants ``MLFLOW_ALLOW_FILE_STORE=true`` for it,
which this plugin sets for that default only). The experiment is ``$MLFLOW_EXPERIMENT_NAME``,
else "clf". ``<run folder>/mlflow.json`` records the run id and the model's URI.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from clf import ClfError, hookimpl, write_json

if TYPE_CHECKING:
    from clf import RunConfig, RunResult

NAME = "mlflow"
PYFUNC = Path(__file__).with_name("mlflow_pyfunc.py")
EXPERIMENT = "clf"
# MLflow run id and epoch counter of each clf run being tracked, by run folder.
_OPEN: dict[str, dict[str, Any]] = {}


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses ./mlruns unless asked
    return (Path.cwd() / "mlruns").as_uri()


def _client() -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri())


def _open(run_dir: Path) -> dict[str, Any]:
    """The MLflow run of the clf run in ``run_dir``, created on first use."""
    key = str(Path(run_dir).resolve())
    if key not in _OPEN:
        client = _client()
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        run = client.create_run(experiment_id, run_name=Path(run_dir).name, tags={"clf.run_dir": key})
        _OPEN[key] = {"client": client, "run_id": run.info.run_id, "step": 0, "experiment": name}
    return _OPEN[key]


def make_mlflow(config: RunConfig, run_dir: Path) -> Any:
    """A Keras callback logging each epoch's metrics (Keras fit and fine-tuning; a solved head has none)."""
    if NAME not in getattr(config, "track", ()):
        return None
    import keras

    state = _open(run_dir)

    class EpochMetrics(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            from mlflow.entities import Metric

            state["step"] += 1  # one count across the head and fine-tuning phases
            now = int(time.time() * 1000)
            metrics = [Metric(f"epoch_{k}", float(v), now, state["step"]) for k, v in (logs or {}).items()]
            state["client"].log_batch(state["run_id"], metrics=metrics)

    return EpochMetrics()


def finish_mlflow(result: RunResult) -> None:
    """Parameters, metrics, phase timings, the run folder and the pyfunc model; then the run ends."""
    if NAME not in getattr(result.config, "track", ()):
        return
    state = _open(result.run_dir)
    client, run_id = state["client"], state["run_id"]
    try:
        _log_run(client, run_id, result)
        model_uri = _log_model(run_id, result.run_dir)
        record = {"tracking_uri": tracking_uri(), "experiment": state["experiment"], "run_id": run_id,
                  "model_uri": model_uri}
        write_json(Path(result.run_dir) / "mlflow.json", record)
        client.log_artifacts(run_id, str(result.run_dir), artifact_path="run")
        client.set_terminated(run_id)
    except ClfError:
        client.set_terminated(run_id, status="FAILED")
        raise
    except Exception as exc:  # a tracker failure must say the run itself is complete
        client.set_terminated(run_id, status="FAILED")
        raise ClfError(f"MLflow tracking of {str(result.run_dir)!r} failed: {exc}. The run folder is complete; "
                       f"expected a reachable tracking store ({tracking_uri()}). Check MLFLOW_TRACKING_URI, "
                       f"or drop --track mlflow.") from exc
    finally:
        _OPEN.pop(str(Path(result.run_dir).resolve()), None)


def _log_run(client: Any, run_id: str, result: RunResult) -> None:
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    params = {k: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v
              for k, v in result.config.to_dict().items()}
    params.update(classes=len(result.class_names), class_names=",".join(result.class_names))
    metrics = {k: float(v) for k, v in result.metrics.items()}
    cv = result.cross_validation
    for score in ("accuracy", "macro_f1") if cv else ():
        metrics.update({f"cv_{score}_{end}": float(cv[score][end]) for end in ("mean", "low", "high")})
    seconds = (result.manifest or {}).get("wall_seconds", {})
    metrics.update({f"seconds_{phase}": float(s) for phase, s in seconds.items()})
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                     params=[Param(k, str(v)[:6000]) for k, v in params.items()])


def requirements() -> list[str]:
    """What serving the model needs: clf (TensorFlow comes through its cpu or gpu extra), mlflow."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("clf", "tensorflow", "tensorflow-cpu", "keras", "mlflow-skinny", "mlflow"):
        try:
            found.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pass
    return found


def _log_model(run_id: str, run_dir: Path) -> str:
    """The bundle (labels.json, the exported files, config.toml) as a pyfunc model; its URI."""
    import json

    import mlflow

    labels = json.loads((Path(run_dir) / "labels.json").read_text(encoding="utf-8"))
    files = {"labels.json", "config.toml"} | {f for names in labels.get("artifacts", {}).values() for f in names}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        for name in sorted(files):
            source = Path(run_dir) / name
            if source.is_dir():
                shutil.copytree(source, bundle / name)
            elif source.is_file():
                (bundle / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, bundle / name)
        mlflow.set_tracking_uri(tracking_uri())
        with mlflow.start_run(run_id=run_id):
            with warnings.catch_warnings():  # MLflow's note on the untyped context/params/output hints
                warnings.filterwarnings("ignore", message="(?s).*type hint", category=UserWarning)
                # Requirements given: inferring them loads the model in a subprocess (~15 s).
                info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC),
                                               artifacts={"bundle": str(bundle)}, pip_requirements=requirements(),
                                               metadata={"class_names": labels["class_names"]})
    return str(info.model_uri)


@hookimpl
def register_callbacks(register: Callable[..., None]) -> None:
    register(NAME, make_mlflow, finish=finish_mlflow, requires=("mlflow",), install="pip install 'clf[mlflow]'",
             description="MLflow tracking: parameters, metrics, timings, run folder, pyfunc model (--track mlflow)")
