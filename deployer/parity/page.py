"""Does the web demo page draw what the source model detects? The page is written, opened
in headless Chromium on sample images (a worker stage), and the detections it draws (image
coordinates) are compared with the reference model's detections on the same images."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from deployer import stages as stage_names
from deployer.datasets.base import to_rgb
from deployer.datasets.preprocess import resize
from deployer.hashing import sha256_of
from deployer.parity.compare import decode_all
from deployer.parity.detection import box_iou
from deployer.spec import ModelSpec
from deployer.stages import attempt

PAGE_SAMPLES = 3

MIN_IOU = 0.5
MIN_RATE = 0.9
# The browser decodes and resizes the image with its own filters, so scores move a little:
# every confident reference box (threshold + margin) must be drawn, and every drawn box must
# exist in the reference down to half the threshold. Boxes in between may go either way.
RECALL_MARGIN = 0.1
PRECISION_FLOOR = 0.5


def _plain(message: str) -> str:
    """A browser console line without colour codes or the runtime's own timestamp (ONNX
    Runtime Web logs both), so the same page gives the same record."""
    message = re.sub(r"\x1b\[[0-9;]*m", "", message)
    return re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? ", "", message).strip()


def reference_detections(reference: dict, spec: ModelSpec, image_paths: list[str]) -> dict[str, list[dict]]:
    """The reference's detections down to half the head's threshold for the first images, in image pixels."""
    n = len(image_paths)
    dets = decode_all({k: v[:n] for k, v in reference.items()}, spec, spec.head.score_threshold * PRECISION_FLOOR)
    inp = spec.inputs[0]
    out = {}
    for path, d in zip(image_paths, dets):
        with Image.open(path) as im:
            _, transform = resize(to_rgb(im), inp.width, inp.height, spec.preprocess.resize, spec.preprocess.pad_value)
        boxes = transform.to_image(d.boxes)
        out[path] = [{"box": b.tolist(), "label": int(l), "score": float(s)} for b, l, s in zip(boxes, d.labels, d.scores)]
    return out


def _match(page: list[dict], ref: list[dict]) -> int:
    if not page or not ref:
        return 0
    ious = box_iou(np.array([d["box"] for d in page]), np.array([d["box"] for d in ref]))
    same = np.array([[p["label"] == r["label"] for r in ref] for p in page])
    ious = np.where(same, ious, 0.0)
    matched, used = 0, set()
    for i in np.argsort(-ious.max(1)):
        j = int(np.argmax(np.where([k in used for k in range(len(ref))], -1, ious[i])))
        if ious[i, j] >= MIN_IOU and j not in used:
            used.add(j)
            matched += 1
    return matched


def compare_page(results: list[dict], reference: dict[str, list[dict]], sample_to_path: dict[str, str],
                 score_threshold: float) -> dict:
    models: dict[str, dict] = {}
    for r in results:
        ref = reference[sample_to_path[r["sample"]]]
        confident = [d for d in ref if d["score"] >= score_threshold + RECALL_MARGIN]
        m = models.setdefault(r["model"], {"page": 0, "page_matched": 0, "reference": 0, "matched": 0, "ms": []})
        m["page"] += len(r["detections"])
        m["page_matched"] += _match(r["detections"], ref)
        m["reference"] += len(confident)
        m["matched"] += _match(r["detections"], confident)
        m["ms"].append(r["ms"])
    reasons = []
    for name, m in models.items():
        m["recall"] = m["matched"] / m["reference"] if m["reference"] else 1.0
        m["precision"] = m["page_matched"] / m["page"] if m["page"] else 1.0
        m["ms_median"] = float(np.median(m.pop("ms")))
        if m["recall"] < MIN_RATE or m["precision"] < MIN_RATE:
            reasons.append(f"demo page, {name}: drew {m['page']} boxes ({m['page_matched']} in the reference); "
                           f"{m['matched']} of the reference's {m['reference']} confident boxes drawn "
                           f"(IoU >= {MIN_IOU}, same label)")
    return {"models": models, "verdict": "fail" if reasons else "pass", "reasons": reasons}


def check_demo_page(prep, spec: ModelSpec, target: str, entries: list[dict], staging: Path) -> dict:
    """Write the web demo page into a target's staging folder, run it in headless Chromium on
    sample images and compare the boxes it draws with the reference model's; the screenshot
    stays in the target folder."""
    from deployer.report.web_page import write_page

    samples = [Path(p) for p in prep.evalset.paths[:PAGE_SAMPLES]]
    urls, error = attempt(lambda: write_page(staging, spec, entries, samples))
    if not error and not urls:
        return {"verdict": "unverified", "reasons": ["no web artifact to show on the page"]}
    if not error:
        # The page, its runtimes, samples and models are all in the staging folder by now:
        # an unchanged folder is an unchanged page check.
        key = prep.cache.key("page", sha256_of(staging))
        checked, error = attempt(lambda: prep.cache.cached("page", key, lambda folder: prep.stages.run(
            stage_names.CHECK_PAGE, (target, "", "demo page"), "node", -1, page_dir=str(staging),
            screenshot=str(folder / "demo.png")).value))
    if error:
        return {"verdict": "fail", "reasons": [f"demo page: {error}"]}
    hit, reused = checked
    if reused:
        prep.stages.progress.stage(target, "", "demo page", "reused")
    shutil.copyfile(hit.folder / "demo.png", staging / "demo.png")
    result = hit.value
    reference = reference_detections(prep.reference.outputs, spec, [str(p) for p in samples])
    page = compare_page(result["results"], reference, dict(zip(urls, map(str, samples))), spec.head.score_threshold)
    page.update({"screenshot": f"{target}/demo.png", "browser": result["browser"],
                 "page_errors": [_plain(e) for e in result["errors"]],
                 "samples": urls, "reused": reused})
    return page
