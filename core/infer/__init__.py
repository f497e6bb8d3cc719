"""The inference core: everything that turns an image into an answer, implemented once.

- :mod:`clf.infer.decode`: one decoder from a file, bytes, an array or a PIL image to a
  model's input (float32 RGB 0-255, centre-cropped and resized as the model was trained).
- :mod:`clf.infer.forward`: one traced forward pass per Keras model.
- :mod:`clf.infer.convert`: the model as a TFLite flatbuffer or as ONNX.
- :mod:`clf.infer.runners`: each runtime (TensorFlow, LiteRT, onnxruntime) behind the same
  ``run(batch) -> outputs``.
- :mod:`clf.infer.store` and :mod:`clf.infer.choice`: converted backbones on disk, and which
  runtime runs the frozen backbone (checked against TensorFlow first).

Run evaluation, verification, ``clf predict``, ``clf serve``, ``clf evaluate``, ``clf
inspect``, ``RunResult.predict`` and the exporter plugins all go through these modules, so
they cannot drift apart. Nothing here imports TensorFlow until it is used.
"""
