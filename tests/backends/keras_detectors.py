"""Small Keras detectors with random weights, saved as TensorFlow SavedModels by the tests
(in a process of their own: TensorFlow must not share one with torch)."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


def _prelu(shared_axes=None):
    # Keras initialises PReLU slopes to 0 (a ReLU): random per-channel slopes make it a PReLU.
    return layers.PReLU(alpha_initializer=keras.initializers.RandomUniform(0.05, 0.5), shared_axes=shared_axes)


def mtcnn_rnet() -> keras.Model:
    """MTCNN's refinement net (24x24 crops, NHWC), PReLU after the fully connected layer too;
    raw outputs: box offsets and face probabilities."""
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((24, 24, 3), batch_size=1, name="images")
    for filters, kernel, pool in ((28, 3, True), (48, 3, True), (64, 2, False)):
        x = _prelu(shared_axes=[1, 2])(layers.Conv2D(filters, kernel)(x))
        if pool:
            x = layers.MaxPooling2D(3, 2, padding="same")(x)
    x = _prelu()(layers.Dense(128)(layers.Flatten()(x)))
    box = layers.Dense(4, name="boxes")(x)
    face = layers.Softmax(name="scores")(layers.Dense(2)(x))
    return keras.Model(inputs, [box, face])


def pooling_resizing() -> keras.Model:
    """The pooling, normalisation and resizing layers detectors are built from (NHWC 32x32):
    max and average pooling, batch norm, bilinear and nearest upsampling, tf.image.resize."""
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((32, 32, 3), batch_size=1, name="images")
    x = layers.Conv2D(8, 3, padding="same")(x)
    x = layers.BatchNormalization(moving_mean_initializer="random_uniform",
                                  moving_variance_initializer=keras.initializers.RandomUniform(0.5, 1.5))(x)
    x = layers.ReLU()(x)
    pooled = layers.Concatenate()([layers.MaxPooling2D(2)(x), layers.AveragePooling2D(3, 2, padding="same")(x)])
    up = layers.Add()([layers.UpSampling2D(2, interpolation="bilinear")(pooled),
                       layers.UpSampling2D(2, interpolation="nearest")(pooled)])
    # Upscaling (a nearest downscale is converted as bilinear by coremltools), each TF sampling mode.
    resized = layers.Lambda(lambda t: tf.image.resize(t, (20, 24)) + tf.image.resize(t, (20, 24), method="nearest")
                            + tf.compat.v1.image.resize_bilinear(t, (20, 24), align_corners=True))(pooled)
    resized = layers.Concatenate()([resized, layers.Lambda(lambda t: tf.image.resize(t, (20, 24)))(up)])
    pooled_same = layers.MaxPooling2D(3, 2, padding="same")(layers.LayerNormalization()(x))
    features = layers.Conv2D(4, 1, name="features")(pooled_same)
    return keras.Model(inputs, [resized, features])


def save(model: keras.Model, path: str, outputs: list[str]) -> None:
    """A SavedModel whose serving signature names its outputs (Keras 3 would name them
    output_0, output_1...)."""
    spec = [tf.TensorSpec(i.shape, tf.float32, name=i.name) for i in model.inputs]

    @tf.function(input_signature=spec)
    def serve(*xs):
        return dict(zip(outputs, model(list(xs) if len(xs) > 1 else xs[0], training=False)))

    holder = tf.Module()
    holder.model = model   # tracks the variables the signature reads
    tf.saved_model.save(holder, path, signatures={"serving_default": serve})
