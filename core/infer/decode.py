"""One decoder from a file, folder, bytes, array or PIL image to a model's input (float32
``[h, w, 3]`` RGB 0-255, JPEGs with Pillow's accurate IDCT, fitted as in training): every
caller decodes here, so the same photo gives the same bits everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterable, Sequence

import numpy as np

from clf.data.images import decode_image, fit_image, ImageSize, is_image_file
from clf.infer.pixels import Undecodable, decode_fit, fit_pixels
from clf.errors import DataError, DataNotFoundError
from clf.data.filecheck import FileProblem, read_file, display_path, image_problem, as_tf_path
from clf.logs import native_stderr_silenced

if TYPE_CHECKING:
    import tensorflow as tf


def collect_images(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Image files from a file, a folder, or a list of them (folders searched recursively,
    sorted). A single ``str`` is one path, never a sequence of characters."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if is_image_file(f)))
        elif p.exists():
            found.append(p)
        else:
            raise DataNotFoundError(f"{str(p)!r} does not exist; expected an image file or a folder. Check the path.")
    return found


def pillow_problem(data: bytes) -> tuple[str, str] | None:
    """Why Pillow cannot decode ``data`` in full either: ``("truncated"|"corrupt", message)``,
    or None. Asked only after TensorFlow failed, so decodable images pay nothing."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc) or type(exc).__name__
        return ("truncated" if "truncat" in text.lower() else "corrupt"), text
    return None


def why_unreadable(path: Path) -> str:
    """Why a file that was safe to read did not decode."""
    if not path.is_file():
        return "not a file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        found = pillow_problem(read_file(path))
    except (FileProblem, OSError):
        found = None
    if found is not None and found[0] == "truncated":
        return f"truncated image ({found[1]}): the file ends early, as after an interrupted copy or download"
    return "not a decodable image (JPEG, PNG, BMP or GIF expected)"


class Decoder:
    """Decodes to one model input size (an ``clf.data.images.ImageSize``, crop included).

    ``tensorflow=False``: Pillow and numpy instead (``clf.infer.pixels``, the same pixels and resize
    up to float rounding), for artifacts that run without TensorFlow; ``tensor`` needs TensorFlow."""

    def __init__(self, size: Sequence[int], center_crop: float | None = None, *, tensorflow: bool = True) -> None:
        self.size = ImageSize(size, center_crop)
        self.tensorflow = tensorflow
        self._traced: Callable[[Any], Any] | None = None

    def tensor(self, contents: "tf.Tensor") -> "tf.Tensor":
        """The TensorFlow op behind every other method, for a ``tf.data`` map."""
        return decode_image(contents, self.size, scale_jpeg=False)

    def from_bytes(self, data: bytes) -> np.ndarray:
        """One encoded image (JPEG, PNG, BMP, GIF); ``tf.errors.InvalidArgumentError`` if not
        (``clf.infer.pixels.Undecodable`` without TensorFlow)."""
        if not self.tensorflow:
            return decode_fit(data, self.size)
        if self._traced is None:  # traced once: much faster than eager
            import tensorflow as tf

            self._traced = tf.function(self.tensor, autograph=False,
                                       input_signature=[tf.TensorSpec([], tf.string)])
        return np.asarray(self._traced(data), np.float32)

    def from_file(self, path: str | os.PathLike[str]) -> np.ndarray:
        """One image file, checked before it is read (unsafe files are refused with their
        reason); a DataError otherwise."""
        problem = image_problem(path)
        if problem:
            raise DataError(f"{display_path(path)!r} cannot be read: {problem}. Remove it or convert it "
                            f"(clf doctor lists such files).")
        if self.tensorflow:
            import tensorflow as tf

            failures: tuple[type[BaseException], ...] = (tf.errors.OpError, OSError)
        else:
            failures = (Undecodable, OSError)
        try:
            return self.from_bytes(Path(path).read_bytes())
        except failures:
            raise DataError(f"{display_path(path)!r} could not be read: {why_unreadable(Path(path))}. Remove "
                            f"it or convert it (clf doctor lists such files).") from None

    def from_array(self, image: Any) -> np.ndarray:
        """A decoded image (array of any size, grayscale or RGB, or a PIL image)."""
        if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
            image = image.convert("RGB")
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[-1] not in (1, 3):
            raise DataError(
                f"An image array of shape {image.shape} cannot be predicted; expected [height, "
                f"width, 3] RGB (or grayscale). Convert it first, e.g. PIL's image.convert('RGB')."
            )
        rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
        if not self.tensorflow:
            return fit_pixels(rgb, self.size)
        import tensorflow as tf

        return np.asarray(fit_image(tf.convert_to_tensor(rgb), self.size), np.float32)

    def batch(self, images: Any) -> np.ndarray:
        """``[n, h, w, 3]`` from a path (a folder means its images, sorted), a list of paths,
        one array of any size, a batch array, or a list of arrays or PIL images."""
        path = (str, os.PathLike)
        if isinstance(images, path) or (isinstance(images, (list, tuple)) and bool(images)
                                        and all(isinstance(i, path) for i in images)):
            out = [self.from_file(f) for f in collect_images(images)]
        else:
            batch = images if isinstance(images, (list, tuple)) else np.asarray(images)
            if isinstance(batch, np.ndarray) and batch.ndim in (2, 3) and not (batch.ndim == 3 and batch.shape[-1] > 4):
                batch = [batch]  # one image, not a batch of rows
            out = [self.from_array(image) for image in batch]
        if not out:
            raise DataError("No images to predict; expected image files, a folder of them, or arrays "
                            "[height, width, 3]. Pass at least one.")
        return np.stack(out).astype(np.float32)

    def files(self, files: Sequence[str | os.PathLike[str]],
              batch_size: int = 32) -> Generator[tuple[list[int], np.ndarray], None, None]:
        """``(indices, batch)`` over the files that decode, in parallel through ``tf.data``;
        an index that never comes back did not decode (the caller asks ``why_unreadable``).
        The files must have passed ``image_problem`` (nothing unsafe is read here)."""
        if not files:
            return
        if not self.tensorflow:
            yield from self._pillow_files(files, batch_size)
            return
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((np.arange(len(files), dtype=np.int64),
                                                 [as_tf_path(f) for f in files]))
        ds = ds.map(lambda i, path: (i, self.tensor(tf.io.read_file(path))), num_parallel_calls=tf.data.AUTOTUNE)
        # ignore_errors drops undecodable files without giving up batching.
        ds = ds.ignore_errors().batch(batch_size).prefetch(tf.data.AUTOTUNE)
        # libjpeg logs errors from the prefetching threads: silence native stderr for the whole
        # iteration (why_unreadable gives the reason instead); the caller's own output between
        # batches (a progress bar, an error) still shows.
        with native_stderr_silenced(keep_python=True):
            for indices, images in ds:
                yield [int(i) for i in indices.numpy()], np.asarray(images.numpy(), np.float32)

    def _pillow_files(self, files: Sequence[str | os.PathLike[str]],
                      batch_size: int) -> Generator[tuple[list[int], np.ndarray], None, None]:
        """``files`` without TensorFlow: decoded on every core (Pillow and numpy release the GIL), the
        next batch while the caller predicts this one; two batches in memory at most."""
        from concurrent.futures import Future, ThreadPoolExecutor

        from clf.infer.runners import cpu_threads

        def decode(path: str | os.PathLike[str]) -> np.ndarray | None:
            try:
                return decode_fit(Path(path).read_bytes(), self.size)
            except (Undecodable, OSError):
                return None

        pool = ThreadPoolExecutor(max_workers=min(cpu_threads(), batch_size), thread_name_prefix="clf-decode")

        def submit(start: int) -> list[Future]:
            return [pool.submit(decode, f) for f in files[start:start + batch_size]]

        try:
            pending = submit(0)
            for start in range(0, len(files), batch_size):
                decoded = [future.result() for future in pending]
                pending = submit(start + batch_size)
                kept = [(start + i, image) for i, image in enumerate(decoded) if image is not None]
                if kept:
                    yield [i for i, _ in kept], np.stack([image for _, image in kept])
        finally:  # closed early (an error while predicting): drop what was not started
            pool.shutdown(wait=True, cancel_futures=True)


# The method names of earlier clf versions, kept for plugins that call them (``bytes`` as a
# method name shadowed the builtin in the class's own annotations, hence the from_ names).
Decoder.bytes = Decoder.from_bytes  # type: ignore[attr-defined]
Decoder.file = Decoder.from_file  # type: ignore[attr-defined]
Decoder.array = Decoder.from_array  # type: ignore[attr-defined]
