"""The inference core: everything that turns an image into an answer, implemented once so
every caller (``clf predict``, ``clf serve``, evaluation, exporters, ...) agrees. TensorFlow
is imported only when used.
"""
