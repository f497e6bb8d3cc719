"""The inference core: everything that turns an image into an answer, implemented once so
every caller (``clf predict``, ``clf serve``, evaluation, exporters, ...) agrees.

- ``clf.infer.decode``: any image to a model's input, as the model was trained.
- ``clf.infer.forward``: one traced forward pass per Keras model.
- ``clf.infer.convert``: the model as a TFLite flatbuffer or as ONNX.
- ``clf.infer.runners``: each runtime behind the same ``run(batch) -> outputs``.
- ``clf.infer.store`` and ``clf.infer.choice``: converted backbones on disk, and which
  runtime runs the frozen backbone (checked against TensorFlow first).

Nothing here imports TensorFlow until it is used.
"""
