"""The ImageNet no-top weights file of each Keras Applications backbone at its default input
size: name, URL and the md5 or sha256 Keras checks (None where it publishes none). Captured
with clf.artifacts.weights.capture (re-checked by tests/test_weights.py); regenerate after a
Keras upgrade."""

from __future__ import annotations

KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"
EFFICIENTNET = "https://storage.googleapis.com/keras-applications/"  # EfficientNet (v1) lives apart


def _file(url: str, file_hash: str | None, fname: str | None = None) -> tuple[str, str, str | None]:
    """``(file name, URL, hash)``: ``url`` under ``KERAS`` unless absolute, named by its end."""
    origin = url if url.startswith("https://") else KERAS + url
    return fname or origin.rsplit("/", 1)[-1], origin, file_hash


IMAGENET_FILES = {
    'vgg16': _file('vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
        '6d6bbae143d832006294945121d1f1fc'),
    'vgg19': _file('vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
        '253f8cb515780f3b799900260a226db6'),
    'resnet50': _file('resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5',
        '4d473c1dd8becc155b73f8504c6f6626'),
    'resnet101': _file('resnet/resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5',
        '88cf7a10940856eca736dc7b7e228a21'),
    'resnet152': _file('resnet/resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5',
        'ee4c566cf9a93f14d82f913c2dc6dd0c'),
    'resnet50_v2': _file('resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5',
        'fac2f116257151a9d068a22e544a4917'),
    'resnet101_v2': _file('resnet/resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5',
        'c0ed64b8031c3730f411d2eb4eea35b5'),
    'resnet152_v2': _file('resnet/resnet152v2_weights_tf_dim_ordering_tf_kernels_notop.h5',
        'ed17cf2e0169df9d443503ef94b23b33'),
    'inception_v3': _file('inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5',
        'bcbd6486424b2319ff4ef7d526e38f63'),
    'inception_resnet_v2': _file(
        'inception_resnet_v2/inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5',
        'd19885ff4a710c122648d3b5c3b684e4'),
    'xception': _file('xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5',
        'b0042744bf5b25fce3cb969f33bebb97'),
    'mobilenet_025': _file('mobilenet/mobilenet_2_5_224_tf_no_top.h5',
        None),
    'mobilenet_050': _file('mobilenet/mobilenet_5_0_224_tf_no_top.h5',
        None),
    'mobilenet_075': _file('mobilenet/mobilenet_7_5_224_tf_no_top.h5',
        None),
    'mobilenet_100': _file('mobilenet/mobilenet_1_0_224_tf_no_top.h5',
        None),
    'mobilenet_v2_035': _file(
        'mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5',
        None),
    'mobilenet_v2_050': _file(
        'mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5',
        None),
    'mobilenet_v2_075': _file(
        'mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.75_224_no_top.h5',
        None),
    'mobilenet_v2_100': _file(
        'mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5',
        None),
    'mobilenet_v2_130': _file(
        'mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.3_224_no_top.h5',
        None),
    'mobilenet_v2_140': _file(
        'mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.4_224_no_top.h5',
        None),
    'mobilenet_v3_small_075': _file(
        'mobilenet_v3/weights_mobilenet_v3_small_224_0.75_float_no_top_v2.h5',
        'ebdb5cc8e0b497cd13a7c275d475c819'),
    'mobilenet_v3_small_100': _file(
        'mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5',
        'd3e8ec802a04aa4fc771ee12a9a9b836'),
    'mobilenet_v3_small_minimalistic_100': _file(
        'mobilenet_v3/weights_mobilenet_v3_small_minimalistic_224_1.0_float_no_top_v2.h5',
        'cde8136e733e811080d9fcd8a252f7e4'),
    'mobilenet_v3_large_075': _file(
        'mobilenet_v3/weights_mobilenet_v3_large_224_0.75_float_no_top_v2.h5',
        '40af19a13ebea4e2ee0c676887f69a2e'),
    'mobilenet_v3_large_100': _file(
        'mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5',
        '07fb09a5933dd0c8eaafa16978110389'),
    'mobilenet_v3_large_minimalistic_100': _file(
        'mobilenet_v3/weights_mobilenet_v3_large_minimalistic_224_1.0_float_no_top_v2.h5',
        'ec5221f64a2f6d1ef965a614bdae7973'),
    'densenet121': _file('densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5',
        '30ee3e1110167f948a6b9946edeeb738'),
    'densenet169': _file('densenet/densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5',
        'b8c4d4c20dd625c148057b9ff1c1176b'),
    'densenet201': _file('densenet/densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5',
        'c13680b51ded0fb44dff2d8f86ac8bb1'),
    'nasnet_mobile': _file('nasnet/NASNet-mobile-no-top.h5',
        '1ed92395b5b598bdda52abe5c0dbfd63', 'nasnet_mobile_no_top.h5'),
    'nasnet_large': _file('nasnet/NASNet-large-no-top.h5',
        'd81d89dc07e6e56530c4e77faddd61b5', 'nasnet_large_no_top.h5'),
    'efficientnet_b0': _file(EFFICIENTNET + 'efficientnetb0_notop.h5',
        '50bc09e76180e00e4465e1a485ddc09d'),
    'efficientnet_b1': _file(EFFICIENTNET + 'efficientnetb1_notop.h5',
        '74c4e6b3e1f6a1eea24c589628592432'),
    'efficientnet_b2': _file(EFFICIENTNET + 'efficientnetb2_notop.h5',
        '111f8e2ac8aa800a7a99e3239f7bfb39'),
    'efficientnet_b3': _file(EFFICIENTNET + 'efficientnetb3_notop.h5',
        'af6d107764bb5b1abb91932881670226'),
    'efficientnet_b4': _file(EFFICIENTNET + 'efficientnetb4_notop.h5',
        'ebc24e6d6c33eaebbd558eafbeedf1ba'),
    'efficientnet_b5': _file(EFFICIENTNET + 'efficientnetb5_notop.h5',
        '38879255a25d3c92d5e44e04ae6cec6f'),
    'efficientnet_b6': _file(EFFICIENTNET + 'efficientnetb6_notop.h5',
        '9ecce42647a20130c1f39a5d4cb75743'),
    'efficientnet_b7': _file(EFFICIENTNET + 'efficientnetb7_notop.h5',
        'cbcfe4450ddf6f3ad90b1b398090fe4a'),
    'efficientnet_v2_b0': _file('efficientnet_v2/efficientnetv2-b0_notop.h5',
        '893217f2bb855e2983157299931e43ff'),
    'efficientnet_v2_b1': _file('efficientnet_v2/efficientnetv2-b1_notop.h5',
        '0e80663031ca32d657f9caa404b6ec37'),
    'efficientnet_v2_b2': _file('efficientnet_v2/efficientnetv2-b2_notop.h5',
        '1dfe2e7a5d45b6632553a8961ea609eb'),
    'efficientnet_v2_b3': _file('efficientnet_v2/efficientnetv2-b3_notop.h5',
        'f6abf7b5849ac99a89b50dd3fd532856'),
    'efficientnet_v2_s': _file('efficientnet_v2/efficientnetv2-s_notop.h5',
        'af0682fb74e8c54910f2d4393339c070'),
    'efficientnet_v2_m': _file('efficientnet_v2/efficientnetv2-m_notop.h5',
        '1b8dc055df72dde80d614482840fe342'),
    'efficientnet_v2_l': _file('efficientnet_v2/efficientnetv2-l_notop.h5',
        'b0b66b5c863aef5b46e8608fe1711615'),
    'convnext_tiny': _file('convnext/convnext_tiny_notop.h5',
        'd547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1'),
    'convnext_small': _file('convnext/convnext_small_notop.h5',
        '6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab'),
    'convnext_base': _file('convnext/convnext_base_notop.h5',
        '40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45'),
    'convnext_large': _file('convnext/convnext_large_notop.h5',
        '96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd'),
    'convnext_xlarge': _file('convnext/convnext_xlarge_notop.h5',
        'de3f8a54174130e0cecdc71583354753d557fcf1f4487331558e2a16ba0cfe05'),
}
