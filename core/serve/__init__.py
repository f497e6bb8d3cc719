"""``clf serve``: a trained model behind an HTTP API and a drop-a-photo page.

    predictor = clf.load_predictor("runs/flowers", fmt="savedmodel")
    app = clf.serve.create_app(predictor, clf.serve.ServeSettings(max_batch=32))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Needs the ``serve`` extra (Starlette, uvicorn, python-multipart): ``pip install 'clf[serve]'``.
"""

from clf.serve.app import ServeSettings, create_app, metadata, warm_up
from clf.serve.batcher import MicroBatcher, QueueFull

__all__ = ["MicroBatcher", "QueueFull", "ServeSettings", "create_app", "metadata", "warm_up"]
