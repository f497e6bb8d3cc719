"""The inference core: everything that turns an image into an answer, implemented once so
every caller (``clf predict``, ``clf serve``, evaluation, exporters, ...) agrees.

``clf.infer.decode`` (any image to a model's input), ``clf.infer.forward`` (one traced
forward per model), ``clf.infer.convert`` (TFLite, ONNX), ``clf.infer.runners`` (each
runtime behind ``run(batch)``), ``clf.infer.store`` and ``clf.infer.choice`` (a classifier's
extractor, its conversions, and which runtime runs it). TensorFlow is imported only when used.
"""
