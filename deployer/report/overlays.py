"""The report's detection overlays: the first evaluation images as the network saw them
(resized and padded as the spec says), each drawn once, inline, and referenced by every
artifact's overlay; the reference's boxes beside the artifact's, those that differ marked.

Images come from the evaluation set (paths in the manifest, relative to the spec's folder);
where it is not on this machine (a merge of CI jobs' outputs), from a report written earlier,
which carries them inline."""

from __future__ import annotations

import base64
import io
import re
from html import escape
from pathlib import Path

import numpy as np

MIN_IOU = 0.5
IMAGE_RE = re.compile(r'<image id="sample-(\d+)" data-source="([^"]*)" width="(\d+)" height="(\d+)" href="([^"]+)"')


def sample_images(manifest: dict, earlier: list[Path]) -> dict[int, dict]:
    """{index: {source, width, height, href}} for the manifest's evaluation samples."""
    evaluation = manifest.get("evaluation") or {}
    samples, view = evaluation.get("samples") or [], evaluation.get("sample_input")
    found: dict[int, dict] = {}
    base = Path(manifest.get("spec") or ".").parent
    for i, sample in enumerate(samples):
        path = base / sample["image"]
        if view and path.is_file():
            try:
                found[i] = _encode(path, view, sample["image"])
            except OSError:
                continue
    for report in earlier:   # the rest from reports that carry them (same image names)
        if len(found) == len(samples) or not report.is_file():
            continue
        for m in IMAGE_RE.finditer(report.read_text(errors="replace")):
            i = int(m.group(1))
            if i < len(samples) and i not in found and m.group(2) == samples[i]["image"]:
                found[i] = {"source": m.group(2), "width": int(m.group(3)), "height": int(m.group(4)),
                            "href": m.group(5)}
    return found


def _encode(path: Path, view: dict, source: str) -> dict:
    from PIL import Image

    from deployer.datasets.base import to_rgb
    from deployer.datasets.preprocess import resize

    with Image.open(path) as im:
        pixels, _ = resize(to_rgb(im), view["width"], view["height"], view["resize"], view["pad_value"])
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return {"source": source, "width": view["width"], "height": view["height"],
            "href": "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()}


def defs(images: dict[int, dict]) -> str:
    """The images, once, for every overlay to reference."""
    items = "".join(f'<image id="sample-{i}" data-source="{escape(im["source"])}" width="{im["width"]}" '
                    f'height="{im["height"]}" href="{im["href"]}"/>' for i, im in sorted(images.items()))
    return f'<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>{items}</defs></svg>'


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)   # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def differences(reference: list[list[float]], artifact: list[list[float]]) -> tuple[list[bool], list[bool]]:
    """Which reference boxes the artifact found (same label, IoU >= 0.5, each matched once,
    highest scores first), and which of the artifact's boxes match one."""
    found, matched = [False] * len(reference), [False] * len(artifact)
    if not reference or not artifact:
        return found, matched
    ious = _iou(np.array([r[:4] for r in reference]), np.array([a[:4] for a in artifact]))
    for j in sorted(range(len(artifact)), key=lambda k: -artifact[k][4]):
        best, best_iou = -1, MIN_IOU
        for i, r in enumerate(reference):
            if not found[i] and int(r[5]) == int(artifact[j][5]) and ious[i, j] >= best_iou:
                best, best_iou = i, ious[i, j]
        if best >= 0:
            found[best], matched[j] = True, True
    return found, matched


def _box(row: list[float], cls: str, labels: list[str], note: str = "") -> str:
    x1, y1, x2, y2, score, label = row
    name = labels[int(label)] if 0 <= int(label) < len(labels) else str(int(label))
    text = f"{name} {score:.2f}{note}"
    return (f'<rect class="{cls}" x="{x1:.1f}" y="{y1:.1f}" width="{max(0.0, x2 - x1):.1f}" '
            f'height="{max(0.0, y2 - y1):.1f}"><title>{escape(text)}</title></rect>'
            f'<text class="{cls}" x="{x1 + 1:.1f}" y="{max(8.0, y1 - 2):.1f}">{escape(text)}</text>')


def panel(index: int, image: dict, boxes: str, caption: str) -> str:
    w, h = image["width"], image["height"]
    return (f'<figure class="ov"><svg viewBox="0 0 {w} {h}" width="{min(w * 2, 210)}" xmlns="http://www.w3.org/2000/svg">'
            f'<use href="#sample-{index}"/>{boxes}</svg><figcaption>{escape(caption)}</figcaption></figure>')


def overlay(index: int, image: dict, reference: list, artifact: list | None, labels: list[str], name: str) -> str:
    """The reference's and the artifact's detections on one image, side by side; the
    artifact's panel marks boxes it adds (orange, dashed) and reference boxes it misses (red)."""
    reference = reference or []
    ref_boxes = "".join(_box(r, "ref", labels) for r in reference)
    if artifact is None:
        return panel(index, image, ref_boxes, "reference") + '<p class="muted">no detections recorded for this run</p>'
    found, matched = differences(reference, artifact)
    art = "".join(_box(a, "same" if ok else "extra", labels, "" if ok else " (added)") for a, ok in zip(artifact, matched))
    art += "".join(_box(r, "missed", labels, " (missed)") for r, ok in zip(reference, found) if not ok)
    differ = sum(not m for m in matched) + sum(not f for f in found)
    return (f'<div class="pair" data-differ="{differ}">' + panel(index, image, ref_boxes, "reference")
            + panel(index, image, art, f"{name}: {differ} box(es) differ" if differ else f"{name}: same boxes")
            + "</div>")
