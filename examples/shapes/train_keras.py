"""Train the Keras twin of ShapesDet with TensorFlow, on the CPU, seeded.

    python -m examples.shapes.train_keras --out examples/shapes/shapes_keras.keras

Same data, assignment and losses as train.py (quality focal loss on the IoU, GIoU box
loss).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from deployer.datasets.synth import CLASSES  # noqa: E402
from examples.shapes.data import (HELDOUT_SEED, SIZE, TRAIN_SEED, add_arguments, flip_targets,  # noqa: E402
                                  heldout_map, make_split, write_report)
from examples.shapes.keras_model import build_keras  # noqa: E402
from examples.shapes.targets import dense_targets, grid  # noqa: E402

POINTS, STRIDES = grid(SIZE)


def giou(a, b):
    lt, rb = tf.maximum(a[..., :2], b[..., :2]), tf.minimum(a[..., 2:], b[..., 2:])
    inter = tf.reduce_prod(tf.maximum(rb - lt, 0.0), -1)
    area_a = tf.reduce_prod(tf.maximum(a[..., 2:] - a[..., :2], 0.0), -1)
    area_b = tf.reduce_prod(tf.maximum(b[..., 2:] - b[..., :2], 0.0), -1)
    union = area_a + area_b - inter + 1e-7
    iou = inter / union
    hull = tf.reduce_prod(tf.maximum(tf.maximum(a[..., 2:], b[..., 2:]) - tf.minimum(a[..., :2], b[..., :2]), 0.0), -1) + 1e-7
    return iou - (hull - union) / hull, iou


def decode(dist):
    d = tf.nn.softplus(dist) * STRIDES[None, :, None]
    return tf.concat([POINTS[None] - d[..., :2], POINTS[None] + d[..., 2:]], -1)


def batch_targets(targets):
    dense = [dense_targets(POINTS, STRIDES, b, l) for b, l in targets]
    return (np.stack([d[0] for d in dense]).astype(np.float32), np.stack([d[1] for d in dense]),
            np.stack([d[2] for d in dense]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="examples/shapes/shapes_keras.keras")
    add_arguments(ap)
    args = ap.parse_args()
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    start = time.time()
    train_x, train_t = make_split(args.train_images, TRAIN_SEED)
    held_x, held_t = make_split(args.heldout_images, HELDOUT_SEED)
    train_x, held_x = train_x.transpose(0, 2, 3, 1), held_x.transpose(0, 2, 3, 1)   # NHWC
    print(f"data ready in {time.time() - start:.0f} s", flush=True)

    model = build_keras(len(CLASSES), SIZE, decode=False)
    warmup = 100
    schedule = keras.optimizers.schedules.CosineDecay(0.0, args.steps, warmup_target=args.lr, warmup_steps=warmup)
    opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=5e-4, clipnorm=10.0)

    @tf.function(reduce_retracing=True)
    def step(x, pos, boxes, cls):
        with tf.GradientTape() as tape:
            dist, logits = model(x, training=True)
            pred = decode(dist)
            g, iou = giou(pred, boxes)
            n_pos = tf.maximum(tf.reduce_sum(pos), 1.0)
            box_loss = tf.reduce_sum((1.0 - g) * pos)
            quality = tf.maximum(tf.stop_gradient(iou), 0.05) * pos
            target = tf.one_hot(cls, len(CLASSES)) * quality[..., None]
            p = tf.sigmoid(logits)
            bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
            qfl = tf.reduce_sum(bce * tf.square(p - target))
            loss = qfl / n_pos + 2.0 * box_loss / n_pos
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for i in range(args.steps):
        idx = rng.integers(0, len(train_x), args.batch)
        x = train_x[idx].astype(np.float32) / 255
        tgts = [train_t[k] for k in idx]
        if rng.random() < 0.5:  # horizontal flip of the whole batch
            x = x[:, :, ::-1]
            tgts = flip_targets(tgts)
        pos, boxes, cls = batch_targets(tgts)
        loss = step(tf.constant(x), tf.constant(pos), tf.constant(boxes), tf.constant(cls))
        if i % 200 == 0 or i == args.steps - 1:
            print(f"step {i} loss {float(loss):.3f} {time.time() - start:.0f} s", flush=True)

    deploy = build_keras(len(CLASSES), SIZE, decode=True)
    deploy.set_weights(model.get_weights())
    outs = [deploy(held_x[k:k + 1].astype(np.float32) / 255, training=False) for k in range(len(held_x))]
    metrics = heldout_map(np.concatenate([o["boxes"].numpy() for o in outs]),
                          np.concatenate([o["scores"].numpy() for o in outs]), held_t)
    print(f"held-out mAP@0.5 {metrics['map50']:.3f}  mAP@0.5:0.95 {metrics['map50_95']:.3f}", flush=True)
    out = Path(args.out)
    deploy.save(out)
    write_report(out, metrics, args, time.time() - start, f"tensorflow {tf.__version__}, keras {keras.__version__}")


if __name__ == "__main__":
    main()
