"""Fine-tune YuNet on face boxes (Pascal VOC), for `trainer fit-detector`: masked faces included.

YuNet's ONNX graph (OpenCV model zoo; 53 convolutions, ReLU, max-pooling, nearest upsampling,
additions) is rebuilt as a Keras model with its weights, so it trains with TensorFlow and exports
to a `.tflite` with a dynamic input size that `edge` runs like the stock file
(edge/detection/yunet.py).

Training follows YuNet's own recipe in small: every photo scaled (with jitter) into a 640 x 640
canvas, flipped, brightness-jittered; each annotated face is assigned to grid cells by a
simplified SimOTA (cells inside the box and near its centre, the k of lowest cost, k from the
IoUs of the current predictions); objectness by binary cross-entropy on every cell, class score
towards the IoU on the assigned cells, boxes by GIoU. The landmark head is kept as it was (the
annotations have no landmarks). Adam at a small rate from the pretrained weights.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.core.boxes import iou_matrix
from edge.core.voc import AnnotatedImage
from edge.detection.yunet import STRIDES, prior_boxes
from edge.inference.evaluate import read_rgb
from trainer.config import DetectorFitConfig
from trainer.errors import UserError

CANVAS = 640
BOX_LOSS_WEIGHT = 5.0


def read_onnx_graph(path: Path) -> tuple[list[dict[str, Any]], list[str], dict[str, np.ndarray]]:
    """Nodes (op, name, inputs, outputs, attributes), output names and weights of an ONNX file."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise UserError("fit-detector needs the onnx package: pip install onnx") from None
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise UserError(f"cannot read {path} as ONNX: {str(exc).splitlines()[0][:120]}") from None
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = [{"op": n.op_type, "name": n.name, "inputs": list(n.input),
              "outputs": list(n.output),
              "attrs": {a.name: helper.get_attribute_value(a) for a in n.attribute
                        if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)}}
             for n in model.graph.node]
    outputs = [o.name for o in model.graph.output]
    if sorted(outputs) != sorted(f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps")
                                 for s in STRIDES):
        raise UserError(f"{path} is not YuNet 2023mar (outputs {outputs})")
    return nodes, outputs, weights


def _conv(node: dict[str, Any], x: Any, weights: dict[str, np.ndarray]) -> Any:
    from keras import layers

    w = weights[node["inputs"][1]]
    b = weights[node["inputs"][2]] if len(node["inputs"]) > 2 else None
    pads, strides = node["attrs"].get("pads", [0, 0, 0, 0]), node["attrs"].get("strides", [1, 1])
    if any(pads):
        x = layers.ZeroPadding2D(((pads[0], pads[2]), (pads[1], pads[3])))(x)
    if node["attrs"].get("group", 1) == 1:
        layer = layers.Conv2D(w.shape[0], w.shape[2:], strides=strides, use_bias=b is not None,
                              name=node["name"])
        kernel = w.transpose(2, 3, 1, 0)
    else:  # depthwise: one filter per channel
        layer = layers.DepthwiseConv2D(w.shape[2:], strides=strides, use_bias=b is not None,
                                       name=node["name"])
        kernel = w.transpose(2, 3, 0, 1)
    y = layer(x)
    layer.set_weights([kernel] + ([b] if b is not None else []))
    return y


def build_yunet(path: Path, logits: bool = False) -> Any:
    """YuNet as a Keras model: BGR 0-255 (1, H, W, 3) in, its 12 outputs by name (cls and obj
    as logits when `logits`)."""
    import keras
    from keras import layers

    nodes, outputs, weights = read_onnx_graph(path)
    inp = keras.Input((None, None, 3), name="input")
    tensors: dict[str, Any] = {"input": inp}
    simple = {"Relu": layers.ReLU, "MaxPool": lambda: layers.MaxPooling2D(2, 2),
              "Resize": lambda: layers.UpSampling2D(2, interpolation="nearest")}
    for node in nodes:
        ins = [tensors[i] for i in node["inputs"] if i not in weights and i in tensors]
        op = node["op"]
        if op == "Conv":
            y = _conv(node, ins[0], weights)
        elif op in simple:
            y = simple[op]()(ins[0])
        elif op == "Add":
            y = layers.Add()(ins)
        elif op == "Transpose":  # NCHW -> NHWC: Keras is NHWC already
            y = ins[0]
        elif op == "Reshape":
            y = layers.Reshape((-1, int(weights[node["inputs"][1]][-1])))(ins[0])
        elif op == "Sigmoid":
            y = ins[0] if logits else layers.Activation("sigmoid")(ins[0])
        else:
            raise UserError(f"{path}: unexpected ONNX op {op} for YuNet")
        tensors[node["outputs"][0]] = y
    return keras.Model(inp, {name: layers.Identity(name=name)(tensors[name])
                             for name in outputs})


def _priors() -> np.ndarray:
    """(N, 3): x, y (cell corner in canvas pixels, YuNet's prior point) and stride."""
    rows = []
    for s in STRIDES:
        n = CANVAS // s
        r, c = np.divmod(np.arange(n * n), n)
        rows.append(np.stack([c * s, r * s, np.full(n * n, s)], 1))
    return np.concatenate(rows).astype(np.float32)


PRIORS = _priors()


def decode_boxes(bbox: np.ndarray) -> np.ndarray:
    """YuNet box outputs (N, 4) on the canvas priors -> x1, y1, x2, y2."""
    xywh = prior_boxes(bbox, PRIORS[:, :2], PRIORS[:, 2:3])
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)


def _candidates(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Priors inside a face box or within 2.5 strides of its centre; and inside *and* near."""
    px, py, ps = PRIORS[:, 0:1], PRIORS[:, 1:2], PRIORS[:, 2:3]
    inside = ((px > truth[None, :, 0]) & (px < truth[None, :, 2]) & (py > truth[None, :, 1])
              & (py < truth[None, :, 3]))
    cx, cy = (truth[:, 0] + truth[:, 2]) / 2, (truth[:, 1] + truth[:, 3]) / 2
    near = (np.abs(px - cx[None]) < 2.5 * ps) & (np.abs(py - cy[None]) < 2.5 * ps)
    return inside | near, inside & near


def assign(score: np.ndarray, boxes: np.ndarray,
           truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simplified SimOTA: foreground mask (N,), its face box (N, 4) and IoU target (N,)."""
    fg = np.zeros(len(PRIORS), bool)
    target = np.zeros((len(PRIORS), 4), np.float32)
    iou_target = np.zeros(len(PRIORS), np.float32)
    if not len(truth):
        return fg, target, iou_target
    either, both = _candidates(truth)
    idx = np.nonzero(either.any(1))[0]
    if not len(idx):
        return fg, target, iou_target
    ious = iou_matrix(boxes[idx], truth)
    cost = (-np.log(np.clip(score[idx], 1e-6, 1))[:, None] - 3.0 * np.log(ious + 1e-8)
            + 1e5 * ~both[idx])
    chosen = np.zeros_like(cost, bool)
    for g in range(len(truth)):
        k = max(1, int(np.sort(ious[:, g])[-10:].sum()))
        chosen[np.argsort(cost[:, g])[:k], g] = True
    shared = chosen.sum(1) > 1
    if shared.any():  # a prior chosen by several faces goes to the cheapest
        best = cost[shared].argmin(1)
        chosen[shared] = False
        chosen[np.nonzero(shared)[0], best] = True
    rows, faces = np.nonzero(chosen)
    fg[idx[rows]] = True
    target[idx[rows]] = truth[faces]
    iou_target[idx[rows]] = ious[rows, faces]
    return fg, target, iou_target


@dataclass
class _Sampler:
    """Random training views of annotated photos on the 640 x 640 canvas (BGR)."""

    items: list[AnnotatedImage]
    rng: np.random.Generator
    jitter: tuple[float, float]
    _cache: dict[int, np.ndarray] = field(default_factory=dict)

    def photo(self, i: int) -> np.ndarray:
        if i not in self._cache:
            rgb = read_rgb(self.items[i].path)
            if rgb is None:
                raise UserError(f"cannot read {self.items[i].path}")
            self._cache[i] = np.ascontiguousarray(rgb[:, :, ::-1])
        return self._cache[i]

    def view(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        bgr = self.photo(i)
        h, w = bgr.shape[:2]
        boxes = np.array([a.box for a in self.items[i].annotations], np.float32).reshape(-1, 4)
        s = min(CANVAS / w, CANVAS / h) * self.rng.uniform(*self.jitter)
        nw, nh = max(1, int(w * s)), max(1, int(h * s))
        img = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA if s < 1
                         else cv2.INTER_LINEAR).astype(np.float32)
        boxes *= s
        if self.rng.random() < 0.5:
            img, boxes[:, [0, 2]] = img[:, ::-1], nw - boxes[:, [2, 0]]
        img = np.clip(img * self.rng.uniform(0.7, 1.3) + self.rng.uniform(-20, 20), 0, 255)
        canvas = np.zeros((CANVAS, CANVAS, 3), np.float32)
        ox, oy = self.rng.integers(0, CANVAS - nw + 1), self.rng.integers(0, CANVAS - nh + 1)
        canvas[oy:oy + nh, ox:ox + nw] = img
        boxes += np.array([ox, oy, ox, oy], np.float32)
        return canvas, boxes[np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= 4]


def _assign_batch(score: np.ndarray, bbox: np.ndarray, truth: np.ndarray,
                  counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`assign` for each photo of a batch; truth is padded to the batch's most faces."""
    rows = [assign(score[b], decode_boxes(bbox[b]), truth[b, :counts[b]])
            for b in range(len(counts))]
    return tuple(np.stack(v) for v in zip(*rows, strict=True))  # type: ignore[return-value]


def _losses(out: dict[str, Any], truth: Any, counts: Any) -> tuple[Any, Any]:
    """Total loss and its parts (objectness, class score, box) of one batch, in graph mode:
    the SimOTA assignment runs in NumPy on the current predictions."""
    import tensorflow as tf

    cls = tf.concat([out[f"cls_{s}"] for s in STRIDES], 1)[..., 0]
    obj = tf.concat([out[f"obj_{s}"] for s in STRIDES], 1)[..., 0]
    bbox = tf.concat([out[f"bbox_{s}"] for s in STRIDES], 1)
    score = tf.sqrt(tf.sigmoid(cls) * tf.sigmoid(obj))
    fg, target, iou_t = tf.numpy_function(
        _assign_batch, [tf.stop_gradient(score), tf.stop_gradient(bbox), truth, counts],
        [tf.bool, tf.float32, tf.float32], stateful=False)
    fg = tf.ensure_shape(fg, cls.shape)
    n_fg = tf.maximum(tf.reduce_sum(tf.cast(fg, tf.float32)), 1.0)
    l_obj = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(tf.cast(fg, tf.float32),
                                                                  obj)) / n_fg
    l_cls = tf.reduce_sum(tf.boolean_mask(
        tf.nn.sigmoid_cross_entropy_with_logits(tf.reshape(iou_t, tf.shape(cls)), cls),
        fg)) / n_fg
    priors = tf.constant(PRIORS)
    s = priors[None, :, 2:3]
    centre = priors[None, :, :2] + bbox[..., :2] * s
    size = tf.exp(tf.clip_by_value(bbox[..., 2:4], -10, 10)) * s
    pred = tf.boolean_mask(tf.concat([centre - size / 2, centre + size / 2], -1), fg)
    target = tf.boolean_mask(tf.reshape(target, tf.shape(bbox)), fg)
    l_box = tf.reduce_sum(_giou_loss(pred, target)) / n_fg
    loss = l_obj + l_cls + BOX_LOSS_WEIGHT * l_box
    return loss, tf.stack([loss, l_obj, l_cls, l_box])


def _giou_loss(pred: Any, target: Any) -> Any:
    import tensorflow as tf

    lt, rb = tf.maximum(pred[:, :2], target[:, :2]), tf.minimum(pred[:, 2:], target[:, 2:])
    inter = tf.reduce_prod(tf.maximum(rb - lt, 0), 1)
    union = (tf.reduce_prod(pred[:, 2:] - pred[:, :2], 1)
             + tf.reduce_prod(target[:, 2:] - target[:, :2], 1) - inter + 1e-9)
    hull = tf.reduce_prod(tf.maximum(pred[:, 2:], target[:, 2:])
                          - tf.minimum(pred[:, :2], target[:, :2]), 1) + 1e-9
    return 1.0 - (inter / union - (hull - union) / hull)


def fit_detector(config: DetectorFitConfig, items: list[AnnotatedImage],
                 progress: Callable[[int, int, dict[str, float]], None] | None = None,
                 ) -> dict[str, Any]:
    """Fine-tune YuNet on the annotated photos and write the `.tflite`; the history."""
    import keras
    import tensorflow as tf

    items = [i for i in items if i.annotations]
    if not items:
        raise UserError("no annotated faces to train the detector on")
    rng = np.random.default_rng(config.seed)
    tf.keras.utils.set_random_seed(config.seed)
    model = build_yunet(config.onnx, logits=True)
    sampler = _Sampler(items, rng, config.scale_jitter)
    steps = max(1, len(items) // config.batch)
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        config.learning_rate, config.epochs * steps, alpha=0.1))
    trainable = model.trainable_variables  # the landmark head gets no gradient: unchanged

    @tf.function(input_signature=[tf.TensorSpec([None, CANVAS, CANVAS, 3], tf.float32),
                                  tf.TensorSpec([None, None, 4], tf.float32),
                                  tf.TensorSpec([None], tf.int32)])
    def train_step(images: Any, truth: Any, counts: Any) -> Any:
        with tf.GradientTape() as tape:
            loss, parts = _losses(model(images, training=True), truth, counts)
        grads = tape.gradient(loss, trainable)
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, trainable, strict=True)
                                   if g is not None])
        return parts

    history = []
    for epoch in range(config.epochs):
        order = rng.permutation(len(items))
        logs = []
        for k in range(steps):
            views = [sampler.view(int(i)) for i in order[k * config.batch:(k + 1) * config.batch]]
            counts = np.array([len(v[1]) for v in views], np.int32)
            truth = np.zeros((len(views), max(1, int(counts.max())), 4), np.float32)
            for b, v in enumerate(views):
                truth[b, :len(v[1])] = v[1]
            values = train_step(np.stack([v[0] for v in views]), truth, counts).numpy()
            parts = dict(zip(("loss", "obj", "cls", "box"), map(float, values), strict=True))
            logs.append(parts)
            if progress:
                progress(epoch, k, parts)
        history.append({"epoch": epoch, **{key: float(np.mean([p[key] for p in logs]))
                                           for key in logs[0]}})
    export_tflite(model, config.onnx, config.out)
    return {"photos": len(items), "faces": sum(len(i.annotations) for i in items),
            "epochs": config.epochs, "history": history}


def export_tflite(trained: Any, onnx: Path, out: Path) -> None:
    """The trained weights in YuNet's inference graph (sigmoid scores), as a `.tflite` with a
    dynamic input size, written atomically."""
    import tensorflow as tf

    from edge.core.fileio import atomic_path

    model = build_yunet(onnx, logits=False)
    for layer in trained.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    with tempfile.TemporaryDirectory() as saved:
        model.export(saved, format="tf_saved_model", verbose=False)
        flat = tf.lite.TFLiteConverter.from_saved_model(saved).convert()
    with atomic_path(Path(out)) as tmp:
        tmp.write_bytes(flat)


def write_history(path: Path, summary: dict[str, Any]) -> None:
    from edge.core.fileio import write_text_atomic

    write_text_atomic(path, json.dumps(summary, indent=1) + "\n")
