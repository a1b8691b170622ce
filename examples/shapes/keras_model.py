"""ShapesDet's Keras twin: the same design as model.py, NHWC, for the TensorFlow frontend.

Backbone of strided conv blocks, a top-down pyramid and a shared head on strides 8, 16
and 32; `Decode` turns distances and logits into `boxes` (1, N, 4) xyxy pixels and
`scores` (1, N, C), with the grid points in the same order as the PyTorch model.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from examples.shapes.targets import grid


def conv_bn(x, c: int, k: int = 3, s: int = 1, name: str = ""):
    x = layers.Conv2D(c, k, s, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def block(x, c: int, name: str):
    y = conv_bn(conv_bn(x, c, name=f"{name}_a"), c, name=f"{name}_b")
    return layers.Add(name=f"{name}_add")([x, y])


@keras.saving.register_keras_serializable(package="shapes")
class Decode(layers.Layer):
    """Distances (stride units, before softplus) and logits -> xyxy boxes and sigmoid scores."""

    def __init__(self, image_size: int, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        # Kept as numpy: made into constants inside call(), so traced graphs embed them
        # instead of capturing eager tensors (which exporters turn into extra inputs).
        points, strides = grid(image_size)
        self.points, self.strides = points[None], strides[None, :, None]

    def call(self, dist, logits):
        points, strides = ops.convert_to_tensor(self.points), ops.convert_to_tensor(self.strides)
        d = ops.softplus(dist) * strides
        boxes = ops.concatenate([points - d[..., :2], points + d[..., 2:]], axis=-1)
        return boxes, ops.sigmoid(logits)

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size}


def build_keras(num_classes: int = 4, image_size: int = 192, width: int = 16, decode: bool = True) -> keras.Model:
    w = width
    images = keras.Input((image_size, image_size, 3), batch_size=1 if decode else None, name="images")
    x = conv_bn(images, w, 3, 2, "stem0")
    x = conv_bn(x, 2 * w, 3, 2, "stem1")
    c8 = block(conv_bn(x, 4 * w, 3, 2, "s8"), 4 * w, "s8b")
    c16 = block(conv_bn(c8, 6 * w, 3, 2, "s16"), 6 * w, "s16b")
    c32 = block(conv_bn(c16, 8 * w, 3, 2, "s32"), 8 * w, "s32b")
    p32 = conv_bn(c32, 4 * w, 1, name="lat32")
    p16 = conv_bn(layers.Add()([conv_bn(c16, 4 * w, 1, name="lat16"), layers.UpSampling2D(2)(p32)]), 4 * w, name="fuse16")
    p8 = conv_bn(layers.Add()([conv_bn(c8, 4 * w, 1, name="lat8"), layers.UpSampling2D(2)(p16)]), 4 * w, name="fuse8")
    head = [layers.Conv2D(4 * w, 3, padding="same", use_bias=False, name="head0_conv"),
            layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="head0_bn"), layers.ReLU(),
            layers.Conv2D(4 * w, 3, padding="same", use_bias=False, name="head1_conv"),
            layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="head1_bn"), layers.ReLU()]
    reg = layers.Conv2D(4, 1, name="reg", bias_initializer="zeros")
    cls = layers.Conv2D(num_classes, 1, name="cls", bias_initializer=keras.initializers.Constant(-4.6))
    regs, logits = [], []
    for p in (p8, p16, p32):
        h = p
        for layer in head:  # shared across levels, as in the PyTorch model
            h = layer(h)
        regs.append(layers.Reshape((-1, 4))(reg(h)))
        logits.append(layers.Reshape((-1, num_classes))(cls(h)))
    dist = layers.Concatenate(axis=1, name="dist")(regs)
    logit = layers.Concatenate(axis=1, name="logits")(logits)
    if not decode:
        return keras.Model(images, [dist, logit], name="shapesdet_raw")
    boxes, scores = Decode(image_size, name="decode")(dist, logit)
    boxes = layers.Identity(name="boxes")(boxes)
    scores = layers.Identity(name="scores")(scores)
    return keras.Model(images, {"boxes": boxes, "scores": scores}, name="shapesdet")


