#!/usr/bin/env python3
"""Classify images with a model exported by `cnntool export`, using only onnxruntime, numpy and Pillow.

Copy this file into your app; it needs neither torch nor cnntool. Everything it needs to preprocess
(input size, channels, mean/std, resize/crop) is read from the ONNX file's metadata.

    pip install onnxruntime numpy pillow
    python onnx_predict.py model.onnx cat.jpg dog.png --top-k 3
"""

import argparse
import json

import numpy as np
import onnxruntime as ort
from PIL import Image

RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
            "lanczos": Image.LANCZOS, "box": Image.BOX}


def load_model(path):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    spec = json.loads(session.get_modelmeta().custom_metadata_map["cnntool.spec"])
    return session, spec


def preprocess(path, spec):
    """File -> float32 (C, H, W): to grayscale or RGB (alpha on white), resize (+ centre crop), normalise."""
    with Image.open(path) as im:
        im.load()
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im.convert("RGBA"))
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / float images: scale to 8 bits
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    im = im.convert("L" if spec["in_channels"] == 1 else "RGB")  # also CMYK, YCbCr, ...
    h, w = spec["input_size"]
    resample = RESAMPLE[spec.get("interpolation", "bilinear")]
    crop_pct = spec.get("crop_pct", 1.0)
    if crop_pct >= 1.0:
        if im.size != (w, h):
            im = im.resize((w, h), resample)
    else:  # resize the shorter side to size / crop_pct, then take the centre crop
        scale = max(h, w) / crop_pct / min(im.size)
        size = (max(w, round(im.size[0] * scale)), max(h, round(im.size[1] * scale)))
        im = im.resize(size, resample)
        left, top = (size[0] - w) // 2, (size[1] - h) // 2
        im = im.crop((left, top, left + w, top + h))
    x = np.asarray(im, dtype=np.uint8)
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    x = x.astype(np.float32) / np.float32(255.0)
    mean = np.asarray(spec["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec["std"], dtype=np.float32).reshape(-1, 1, 1)
    return (x - mean) / std


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--top-k", type=int, default=3)
    args = ap.parse_args()
    session, spec = load_model(args.model)
    input_name = session.get_inputs()[0].name
    for path in args.images:
        x = preprocess(path, spec)[None]  # batch of one (works with a static-batch export too)
        logits = session.run(None, {input_name: x})[0][0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        top = np.argsort(-probs, kind="stable")[:args.top_k]
        print(path + "\t" + "\t".join(f"{spec['class_names'][i]}:{probs[i]:.4f}" for i in top))


if __name__ == "__main__":
    main()
