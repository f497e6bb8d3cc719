"""Every model in ``keras.applications`` as a clf backbone, from one table; parameter counts
and feature widths are recorded so that listing never builds a model."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from clf import hookimpl, keras_cache_dir, keras_downloads, WeightsError, WeightsFile
from clf.plugins.keras_weights_table import IMAGENET_FILES


@dataclass(frozen=True)
class App:
    name: str
    ctor: str  # attribute of keras.applications
    module: str  # keras.applications module providing preprocess_input
    size: int
    params: int
    features: int
    description: str
    kwargs: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    min_size: int = 32


def _mobilenets() -> list[App]:
    v1 = {0.25: (218544, 256), 0.5: (829536, 512), 0.75: (1832976, 768), 1.0: (3228864, 1024)}
    v2 = {0.35: (410208, 1280), 0.5: (706224, 1280), 0.75: (1382064, 1280),
          1.0: (2257984, 1280), 1.3: (3766048, 1664), 1.4: (4363712, 1792)}
    v3 = {("small", 0.75, False): (583160, 432), ("small", 1.0, False): (939120, 576),
          ("small", 1.0, True): (441000, 576), ("large", 0.75, False): (1808736, 720),
          ("large", 1.0, False): (2996352, 960), ("large", 1.0, True): (1437608, 960)}
    apps = []
    for alpha, (p, f) in v1.items():  # named by width in hundredths: mobilenet_025
        apps.append(App(f"mobilenet_{alpha * 100:03.0f}", "MobileNet", "mobilenet", 224, p, f,
                        f"MobileNet v1, width {alpha} (2017): depthwise separable convs",
                        {"alpha": alpha}, ("mobilenet",) if alpha == 1.0 else ()))
    for alpha, (p, f) in v2.items():
        apps.append(App(f"mobilenet_v2_{alpha * 100:03.0f}", "MobileNetV2", "mobilenet_v2", 224,
                        p, f, f"MobileNetV2, width {alpha} (2018): inverted residuals",
                        {"alpha": alpha}, ("mobilenet_v2",) if alpha == 1.0 else ()))
    for (kind, alpha, mini), (p, f) in v3.items():
        name = f"mobilenet_v3_{kind}_{'minimalistic_' if mini else ''}{alpha * 100:03.0f}"
        alias = (f"mobilenet_v3_{kind}",) if alpha == 1.0 and not mini else ()
        apps.append(App(name, f"MobileNetV3{kind.capitalize()}", "mobilenet_v3", 224, p, f,
                        f"MobileNetV3-{kind.capitalize()}{' minimalistic' if mini else ''}, "
                        f"width {alpha} (2019); preprocessing built in",
                        {"alpha": alpha, "minimalistic": mini}, alias))
    return apps


APPS: list[App] = [
    App("vgg16", "VGG16", "vgg16", 224, 14714688, 512, "VGG16 (2014): 13 convs, the classic transfer-learning base"),
    App("vgg19", "VGG19", "vgg19", 224, 20024384, 512, "VGG19 (2014): 16 convs"),
    App("resnet50", "ResNet50", "resnet", 224, 23587712, 2048, "ResNet-50 (2015): residual bottlenecks"),
    App("resnet101", "ResNet101", "resnet", 224, 42658176, 2048, "ResNet-101 (2015)"),
    App("resnet152", "ResNet152", "resnet", 224, 58370944, 2048, "ResNet-152 (2015)"),
    App("resnet50_v2", "ResNet50V2", "resnet_v2", 224, 23564800, 2048, "ResNet-50 v2 (2016): pre-activation"),
    App("resnet101_v2", "ResNet101V2", "resnet_v2", 224, 42626560, 2048, "ResNet-101 v2 (2016)"),
    App("resnet152_v2", "ResNet152V2", "resnet_v2", 224, 58331648, 2048, "ResNet-152 v2 (2016)"),
    App("inception_v3", "InceptionV3", "inception_v3", 299, 21802784, 2048, "Inception v3 (2015)", min_size=75),
    App("inception_resnet_v2", "InceptionResNetV2", "inception_resnet_v2", 299, 54336736, 1536,
        "Inception-ResNet v2 (2016)", min_size=75),
    App("xception", "Xception", "xception", 299, 20861480, 2048, "Xception (2016): extreme inception", min_size=71),
    *_mobilenets(),
    App("densenet121", "DenseNet121", "densenet", 224, 7037504, 1024, "DenseNet-121 (2016): dense connections"),
    App("densenet169", "DenseNet169", "densenet", 224, 12642880, 1664, "DenseNet-169 (2016)"),
    App("densenet201", "DenseNet201", "densenet", 224, 18321984, 1920, "DenseNet-201 (2016)"),
    App("nasnet_mobile", "NASNetMobile", "nasnet", 224, 4269716, 1056, "NASNet-A Mobile (2017): searched cells"),
    App("nasnet_large", "NASNetLarge", "nasnet", 331, 84916818, 4032, "NASNet-A Large (2017)"),
    *[App(f"efficientnet_b{i}", f"EfficientNetB{i}", "efficientnet", s, p, f,
          f"EfficientNet-B{i} (2019); preprocessing built in")
      for i, (s, p, f) in enumerate([(224, 4049571, 1280), (240, 6575239, 1280), (260, 7768569, 1408),
                                     (300, 10783535, 1536), (380, 17673823, 1792), (456, 28513527, 2048),
                                     (528, 40960143, 2304), (600, 64097687, 2560)])],
    *[App(f"efficientnet_v2_{v.lower()}", f"EfficientNetV2{v}", "efficientnet_v2", s, p, f,
          f"EfficientNetV2-{v} (2021); preprocessing built in")
      for v, s, p, f in [("B0", 224, 5919312, 1280), ("B1", 240, 6931124, 1280), ("B2", 260, 8769374, 1408),
                         ("B3", 300, 12930622, 1536), ("S", 384, 20331360, 1280), ("M", 480, 53150388, 1280),
                         ("L", 480, 117746848, 1280)]],
    *[App(f"convnext_{v.lower()}", f"ConvNeXt{v}", "convnext", 224, p, f,
          f"ConvNeXt-{v} (2022): modernised ResNet; preprocessing built in")
      for v, p, f in [("Tiny", 27820128, 768), ("Small", 49454688, 768), ("Base", 87566464, 1024),
                      ("Large", 196230336, 1536), ("XLarge", 348147968, 2048)]],
]


def make_builder(app: App) -> Callable[[Sequence[int], str | None], Any]:
    def build(input_shape: Sequence[int], weights: str | None) -> Any:
        import keras  # deferred: registering must stay cheap

        ctor = getattr(keras.applications, app.ctor)
        kwargs = dict(include_top=False, input_shape=tuple(input_shape), pooling="avg", **app.kwargs)
        # MobileNetV3, EfficientNet(V2) and ConvNeXt keep their built-in rescaling (Keras'
        # default); their module's preprocess_input, used by the Preprocess layer, is identity.
        if weights is None:
            return ctor(weights=None, **kwargs)
        if weights == "imagenet":
            try:
                with keras_downloads():  # mirror, hash check and one clear message
                    return ctor(weights="imagenet", **kwargs)
            except WeightsError:
                raise
            except Exception as exc:
                if not ("fetch failure" in str(exc) or "URL" in str(exc) or isinstance(exc, OSError)):
                    raise
                raise WeightsError(
                    f"ImageNet weights for backbone {app.name!r} are not in the Keras cache "
                    f"({keras_cache_dir()}) and could not be downloaded: {exc}. Expected "
                    f"network access to the Keras weights host or a cached file. Fix: copy "
                    f"the Keras weights file into {keras_cache_dir()}, pass --weights FILE "
                    f"with a local weights file, or pass --weights none to train from "
                    f"random weights."
                ) from None
        path = Path(weights)
        if path.is_dir():
            raise WeightsError(
                f"--weights {str(path)!r} is a folder; expected a weights file for backbone "
                f"{app.name!r} (a Keras .h5 or .weights.h5 file), 'imagenet' or 'none'. Pass the "
                f"file inside it."
            )
        if not path.is_file():
            raise WeightsError(
                f"Weights file {str(path)!r} for backbone {app.name!r} does not exist; "
                f"expected 'imagenet', 'none' or a path to a weights file. Check the path."
            )
        model = ctor(weights=None, **kwargs)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model.load_weights(str(path))
            # Keras loads a partly matching file with only a warning, the rest random: a wrong file.
            partial = [str(w.message) for w in caught if "freshly-initialized" in str(w.message)]
            if partial:
                raise ValueError(f"only part of the file matched the model ({partial[0][:120]})")
        except Exception as exc:
            raise WeightsError(
                f"Weights file {str(path)!r} does not fit backbone {app.name!r} "
                f"({app.ctor}{_kw(app.kwargs)}, no top): {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}. Expected a headless (no-top) weights "
                f"file saved from that exact architecture. Pick the matching --backbone "
                f"(e.g. a width variant such as mobilenet_v2_035) or another file."
            ) from None
        return model

    build.__doc__ = app.description
    return build


def _kw(kwargs: dict) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")" if kwargs else ""


@hookimpl
def register_backbones(register: Callable[..., None]) -> None:
    for app in APPS:
        entry = IMAGENET_FILES.get(app.name)
        register(app.name, make_builder(app), preprocess=app.module, input_size=(app.size, app.size),
                 aliases=app.aliases, description=app.description, params=app.params,
                 features=app.features, min_size=app.min_size,
                 imagenet_file=WeightsFile(*entry) if entry else None)
