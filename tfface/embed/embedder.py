"""One interface over face embedders in many formats: Keras, SavedModel, ONNX, TFLite, a Python callable.

An :class:`Embedder` pairs a model with its named :mod:`~tfface.embed.preprocessing`. ``embed`` takes RGB
images in 0..255 shaped ``(N, H, W, 3)``, preprocesses them batch by batch and returns float32 ``(N, D)``
embeddings, L2-normalised by default (the convention of ArcFace-style evaluation: cosine similarity is
the dot product of the rows).

Example::

    from tfface.embed import Embedder
    emb = Embedder.load("MobileFaceNet.onnx", "mobilefacenet_onnx")   # or a .keras, SavedModel dir, .tflite
    feats = emb.embed(aligned_faces_uint8)                             # (N, 128), unit rows
    emb.dim, emb.name, emb.preprocessing.name

:func:`extract_features` writes the feature file the evaluation reads: an uncompressed ``.npz`` with
``features`` float32 (N, D), ``labels`` int64 (N,) and optional ``ids`` and ``paths``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfface.data.features import save_features
from tfface.embed.preprocessing import Preprocessing, check_images, get_preprocessing
from tfface.errors import ConfigError, DataError

BackendFn = Callable[[np.ndarray], Any]

FORMATS = "a Keras model or .keras file, a SavedModel directory (with saved_model.pb), .onnx, .tflite, a callable"

_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class Embedder:
    """A face embedder: ``embed(images) -> (N, D)`` float32, whatever the model format.

    Build one with a ``from_*`` constructor or :meth:`load`. The backend function receives a
    preprocessed float32 batch (in the preprocessing's layout) and returns ``(n, D)``; trailing axes of
    the output (e.g. ``(n, D, 1, 1)``) are flattened. ``fixed_batch`` is for models whose batch size is
    baked in: the last chunk is zero-padded to it and the padding rows are dropped.
    """

    def __init__(self, fn: BackendFn, preprocessing: str | Preprocessing, name: str,
                 dim: int | None = None, fixed_batch: int | None = None, resource: Any = None) -> None:
        self._fn = fn
        self._preprocessing = get_preprocessing(preprocessing)
        self._name = name
        self._dim = int(dim) if dim else None
        self._fixed_batch = int(fixed_batch) if fixed_batch else None
        self._resource = resource  # keeps loaded objects (SavedModel, session) alive

    # ----------------------------------------------------------------------------------------- properties
    @property
    def name(self) -> str:
        """``<format>:<model name or file>``."""
        return self._name

    @property
    def preprocessing(self) -> Preprocessing:
        return self._preprocessing

    @property
    def dim(self) -> int:
        """The embedding dimension D (read from the model, or found by embedding one blank image)."""
        if self._dim is None:
            h, w = self._preprocessing.input_size
            self._dim = int(self.embed(np.zeros((1, h, w, 3), np.uint8), normalize=False).shape[1])
        return self._dim

    def __repr__(self) -> str:
        return f"Embedder({self._name!r}, preprocessing={self._preprocessing.name!r}, dim={self._dim})"

    # ------------------------------------------------------------------------------------------- embedding
    def embed(self, images: np.ndarray, batch_size: int = 64, normalize: bool = True,
              progress: bool = False, landmarks5: np.ndarray | None = None) -> np.ndarray:
        """Embed RGB images in 0..255 shaped ``(N, H, W, 3)``; float32 ``(N, D)``, unit rows if ``normalize``.

        Images of the model's input size are used as they are. Images of another size are aligned to the
        model's crop with the 5-point similarity transform (:func:`~tfface.data.alignment.align_face`,
        the ArcFace template scaled to the input size) when ``landmarks5`` ``(N, 5, 2)`` (pixels, ArcFace
        order) are given; without landmarks they are resized, which does not align them, and a
        ``UserWarning`` naming both sizes says so (once per call).
        """
        images = check_images(images)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        n = len(images)
        model_hw = tuple(int(v) for v in self._preprocessing.input_size)
        align = None
        if n and tuple(images.shape[1:3]) != model_hw:
            if landmarks5 is not None:
                align = _aligner(landmarks5, n, model_hw)
            else:
                warnings.warn(
                    f"{self._name}: images are {images.shape[1]}x{images.shape[2]} (HxW) but the model takes "
                    f"{model_hw[0]}x{model_hw[1]}; no landmarks given, so they are resized without alignment "
                    "(align faces to the model's crop, or pass landmarks5, for full accuracy)",
                    UserWarning, stacklevel=2)
        step = self._fixed_batch or batch_size
        starts = range(0, n, step)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"embed {self._name}", unit="batch")
        chunks = []
        for i in starts:
            batch = images[i:i + step]
            x = self._preprocessing(batch if align is None else align(batch, i))
            m = len(x)
            if self._fixed_batch and m < self._fixed_batch:
                x = np.concatenate([x, np.zeros((self._fixed_batch - m, *x.shape[1:]), x.dtype)])
            y = np.asarray(self._fn(x))
            if y.ndim < 2 or y.shape[0] < m:
                raise DataError(f"embedder {self._name} returned shape {y.shape} for a batch of {len(x)}; "
                                "expected (batch, D)")
            chunks.append(y[:m].reshape(m, -1).astype(np.float32, copy=False))
        if not chunks:
            return np.zeros((0, self._dim or 0), np.float32)
        feats = np.concatenate(chunks).astype(np.float32, copy=False)
        if self._dim is None:
            self._dim = feats.shape[1]
        if normalize:
            feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        return feats.astype(np.float32, copy=False)

    __call__ = embed

    # ------------------------------------------------------------------------------------------ constructors
    @classmethod
    def from_keras(cls, model: Any, preprocessing: str | Preprocessing, name: str | None = None) -> Embedder:
        """A Keras model mapping the preprocessed batch to ``(N, D)``, run with ``predict_on_batch``."""
        prep = get_preprocessing(preprocessing)
        shape = _keras_input_shape(model)
        if shape is not None and not _shapes_match(shape, prep.model_input_shape):
            raise ConfigError(f"Keras model {model.name!r} takes input {shape}, but preprocessing "
                              f"{prep.name!r} makes {(None, *prep.model_input_shape)}")
        dim = None
        with contextlib.suppress(AttributeError, ValueError, TypeError):
            last = model.output_shape[-1]
            dim = last if isinstance(last, int) else None

        def fn(x: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict_on_batch(x))

        return cls(fn, prep, name or f"keras:{model.name}", dim=dim, resource=model)

    @classmethod
    def from_saved_model(cls, path: str | os.PathLike, preprocessing: str | Preprocessing,
                         signature: str = "serving_default", input_name: str | None = None,
                         output_name: str | None = None, name: str | None = None) -> Embedder:
        """A SavedModel directory (e.g. a TF Serving ``<base>/<name>/<version>``) through one signature."""
        import tensorflow as tf

        path = Path(path)
        _require_exists(path)
        if not (path / "saved_model.pb").is_file():
            raise DataError(f"{path} is not a SavedModel directory (no saved_model.pb)")
        loaded = tf.saved_model.load(str(path))
        sigs = loaded.signatures
        if signature not in sigs:
            raise ConfigError(f"{path} has no signature {signature!r}; it has: {', '.join(sorted(sigs)) or 'none'}")
        sig = sigs[signature]
        in_specs = sig.structured_input_signature[1]
        out_specs = sig.structured_outputs
        in_name = _pick(input_name, list(in_specs), f"{path} signature {signature!r} input")
        out_name = _pick(output_name, list(out_specs), f"{path} signature {signature!r} output")
        dtype = in_specs[in_name].dtype
        last = out_specs[out_name].shape[-1] if out_specs[out_name].shape.rank else None

        def fn(x: np.ndarray) -> np.ndarray:
            return sig(**{in_name: tf.constant(x, dtype=dtype)})[out_name].numpy()

        return cls(fn, preprocessing, name or f"saved_model:{path}", dim=last, resource=loaded)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, preprocessing: str | Preprocessing,
                  input_name: str | None = None, output_name: str | None = None,
                  name: str | None = None) -> Embedder:
        """An ONNX model run with onnxruntime on the CPU provider.

        A model with a fixed batch size (e.g. 1, like foamliu's MobileFaceNet) is fed chunks of exactly that
        size; a dynamic batch axis takes ``embed``'s ``batch_size`` chunks.
        """
        import onnxruntime as ort

        path = Path(path)
        _require_exists(path)
        try:
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise DataError(f"{path}: not a readable ONNX model ({e})") from e
        inputs = {i.name: i for i in sess.get_inputs()}
        outputs = {o.name: o for o in sess.get_outputs()}
        in_name = _pick(input_name, list(inputs), f"{path} input")
        out_name = _pick(output_name, list(outputs), f"{path} output")
        spec = inputs[in_name]
        if spec.type not in _ONNX_DTYPES:
            raise DataError(f"{path}: input {in_name!r} has type {spec.type}; expected a float tensor")
        dtype = _ONNX_DTYPES[spec.type]
        batch = spec.shape[0] if spec.shape else None
        fixed = batch if isinstance(batch, int) and batch > 0 else None
        last = outputs[out_name].shape[-1] if outputs[out_name].shape else None

        def fn(x: np.ndarray) -> np.ndarray:
            return sess.run([out_name], {in_name: x.astype(dtype, copy=False)})[0]

        return cls(fn, preprocessing, name or f"onnx:{path.name}", dim=last if isinstance(last, int) else None,
                   fixed_batch=fixed, resource=sess)

    @classmethod
    def from_tflite(cls, path: str | os.PathLike, preprocessing: str | Preprocessing,
                    output_index: int = 0, num_threads: int | None = None, name: str | None = None) -> Embedder:
        """A TFLite model run with ``tf.lite.Interpreter``; the input tensor is resized to each batch.

        Quantised (int8/uint8) inputs and outputs are (de)quantised with the tensor's scale and zero point.
        A model whose batch axis is not dynamic (``shape_signature[0] != -1``) gets fixed-size chunks.
        """
        path = Path(path)
        _require_exists(path)
        interp = _tflite_interpreter(path, num_threads)
        ins = interp.get_input_details()
        if len(ins) != 1:
            raise DataError(f"{path}: an embedder takes one input tensor, this model has {len(ins)}")
        outs = interp.get_output_details()
        if not 0 <= output_index < len(outs):
            raise ConfigError(f"{path}: output_index {output_index} out of range (model has {len(outs)} outputs)")
        inp, out = ins[0], outs[output_index]
        sig = inp.get("shape_signature", inp["shape"])
        fixed = int(inp["shape"][0]) if len(sig) and sig[0] != -1 else None
        in_scale, in_zero = inp["quantization"]
        out_scale, out_zero = out["quantization"]
        state = {"batch": None}

        def fn(x: np.ndarray) -> np.ndarray:
            if state["batch"] != len(x):
                if fixed is None:
                    interp.resize_tensor_input(inp["index"], [len(x), *x.shape[1:]])
                interp.allocate_tensors()
                state["batch"] = len(x)
            if in_scale:
                info = np.iinfo(inp["dtype"])
                x = np.clip(np.round(x / in_scale + in_zero), info.min, info.max)
            interp.set_tensor(inp["index"], x.astype(inp["dtype"], copy=False))
            interp.invoke()
            y = interp.get_tensor(out["index"])
            if out_scale:
                y = (y.astype(np.float32) - out_zero) * out_scale
            return y.copy()

        last = int(out["shape"][-1]) if len(out["shape"]) >= 2 else None
        return cls(fn, preprocessing, name or f"tflite:{path.name}", dim=last, fixed_batch=fixed, resource=interp)

    @classmethod
    def from_callable(cls, fn: BackendFn, preprocessing: str | Preprocessing, dim: int | None = None,
                      name: str | None = None) -> Embedder:
        """Any function from the preprocessed float32 batch to ``(n, D)`` (numpy, TF or anything array-like)."""
        if not callable(fn):
            raise ConfigError(f"from_callable needs a callable, got {type(fn).__name__}")
        label = getattr(fn, "__name__", type(fn).__name__)
        return cls(lambda x: np.asarray(fn(x)), preprocessing, name or f"callable:{label}", dim=dim, resource=fn)

    @classmethod
    def from_keras_file(cls, path: str | os.PathLike, preprocessing: str | Preprocessing,
                        custom_objects: dict | None = None, name: str | None = None) -> Embedder:
        """A ``.keras`` file, loaded with ``keras.saving.load_model(path, safe_mode=True)``."""
        from tfface.keras_files import load_keras_file

        path = Path(path)
        _require_exists(path)
        model = load_keras_file(path, "model", custom_objects=custom_objects)  # safe_mode=True
        return cls.from_keras(model, preprocessing, name=name or f"keras:{path.name}")

    @classmethod
    def load(cls, path_or_model: Any, preprocessing: str | Preprocessing, **kwargs: Any) -> Embedder:
        """Dispatch on what ``path_or_model`` is.

        A Keras model -> :meth:`from_keras`; a directory with ``saved_model.pb`` -> :meth:`from_saved_model`;
        ``.onnx`` -> :meth:`from_onnx`; ``.tflite`` -> :meth:`from_tflite`; ``.keras`` ->
        :meth:`from_keras_file`; another callable -> :meth:`from_callable`. ``kwargs`` go to that constructor.
        """
        import keras

        if isinstance(path_or_model, Embedder):
            return path_or_model
        if isinstance(path_or_model, keras.Model):
            return cls.from_keras(path_or_model, preprocessing, **kwargs)
        if isinstance(path_or_model, (str, os.PathLike)):
            path = Path(path_or_model)
            _require_exists(path)
            if path.is_dir():
                if (path / "saved_model.pb").is_file():
                    return cls.from_saved_model(path, preprocessing, **kwargs)
                raise DataError(f"{path} is a directory without saved_model.pb; expected {FORMATS}")
            suffix = path.suffix.lower()
            if suffix == ".onnx":
                return cls.from_onnx(path, preprocessing, **kwargs)
            if suffix == ".tflite":
                return cls.from_tflite(path, preprocessing, **kwargs)
            if suffix == ".keras":
                return cls.from_keras_file(path, preprocessing, **kwargs)
            raise DataError(f"{path}: unknown model format {suffix or '(no extension)'!r}; expected {FORMATS}")
        if callable(path_or_model):
            return cls.from_callable(path_or_model, preprocessing, **kwargs)
        raise ConfigError(f"cannot make an embedder from {type(path_or_model).__name__}; expected {FORMATS}")


def extract_features(embedder: Embedder, images: np.ndarray, labels: Sequence[int] | np.ndarray,
                     out_path: str | os.PathLike, ids: Sequence | np.ndarray | None = None,
                     paths: Sequence[str | os.PathLike] | None = None, batch_size: int = 64,
                     progress: bool = True, landmarks5: np.ndarray | None = None) -> Path:
    """Embed ``images`` (unit rows) and write the feature file; returns its path.

    A progress bar over batches goes to stderr unless ``progress=False``. ``landmarks5`` (N, 5, 2)
    align images whose size is not the model's (see :meth:`Embedder.embed`).

    The file is an uncompressed ``.npz`` (written atomically) with ``features`` float32 (N, D), ``labels``
    int64 (N,), and ``ids`` / ``paths`` (N,) when given (strings are stored as numpy unicode, so
    ``np.load(..., allow_pickle=False)`` reads it).
    """
    n = len(check_images(images))
    labels = _column(labels, n, "labels")
    ids = None if ids is None else _column(ids, n, "ids")
    paths = None if paths is None else _column([str(p) for p in paths], n, "paths")
    features = embedder.embed(images, batch_size=batch_size, normalize=True, progress=progress,
                              landmarks5=landmarks5)
    return save_features(out_path, features, labels, ids=ids, paths=paths)


# ------------------------------------------------------------------------------------------------- helpers
def _aligner(landmarks5: Any, n: int, model_hw: tuple[int, int]) -> Callable[[np.ndarray, int], np.ndarray]:
    """``align(batch, start)``: the batch's images warped so their landmarks land on the model's template."""
    from tfface.data.alignment import align_face

    lms = np.asarray(landmarks5, np.float64)
    if lms.shape != (n, 5, 2):
        raise DataError(f"landmarks5 must have shape ({n}, 5, 2) to match the images, got {lms.shape}")
    h, w = model_hw
    template = "arcface112x96" if h * 96 == w * 112 else "arcface112"  # scaled to (h, w)

    def align(batch: np.ndarray, start: int) -> np.ndarray:
        imgs = batch if batch.dtype == np.uint8 else np.clip(np.round(batch), 0, 255).astype(np.uint8)
        return np.stack([align_face(im, lms[start + k], template, output_size=(h, w))
                         for k, im in enumerate(imgs)])

    return align


def _column(values: Any, n: int, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = arr.astype(str)
    if arr.shape != (n,):
        raise DataError(f"{what} must have shape ({n},) to match the images, got {arr.shape}")
    return arr


def _require_exists(path: Path) -> None:
    if not path.exists():
        raise DataError(f"model path not found: {path}")


def _pick(wanted: str | None, names: list[str], what: str) -> str:
    if wanted is not None:
        if wanted not in names:
            raise ConfigError(f"{what} {wanted!r} not found; it has: {', '.join(names)}")
        return wanted
    if len(names) != 1:
        raise ConfigError(f"{what}: expected one, found {len(names)} ({', '.join(names)}); name the one to use")
    return names[0]


def _keras_input_shape(model: Any) -> tuple | None:
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    if isinstance(shape, tuple) and all(d is None or isinstance(d, int) for d in shape):
        return shape
    return None


def _shapes_match(model_shape: tuple, image_shape: tuple) -> bool:
    dims = model_shape[1:]
    return len(dims) == len(image_shape) and all(d is None or d == s for d, s in zip(dims, image_shape, strict=True))


def _tflite_interpreter(path: Path, num_threads: int | None) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter  # the successor of tf.lite.Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        try:
            return Interpreter(model_path=str(path), num_threads=num_threads)
        except ValueError as e:
            raise DataError(f"{path}: not a readable TFLite model ({e})") from e
