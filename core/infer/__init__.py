"""The inference core: everything that turns an image into an answer, implemented once.

- ``clf.infer.decode``: one decoder from a file, bytes, an array or a PIL image to a
  model's input (float32 RGB 0-255, centre-cropped and resized as the model was trained).
- ``clf.infer.forward``: one traced forward pass per Keras model.
- ``clf.infer.convert``: the model as a TFLite flatbuffer or as ONNX.
- ``clf.infer.runners``: each runtime (TensorFlow, LiteRT, onnxruntime) behind the same
  ``run(batch) -> outputs``.
- ``clf.infer.store`` and ``clf.infer.choice``: converted backbones on disk, and which
  runtime runs the frozen backbone (checked against TensorFlow first).

Run evaluation, verification, ``clf predict``, ``clf serve``, ``clf evaluate``, ``clf
inspect``, ``RunResult.predict`` and the exporter plugins all go through these modules, so
they cannot drift apart. Nothing here imports TensorFlow until it is used.
"""
