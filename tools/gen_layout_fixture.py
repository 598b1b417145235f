#!/usr/bin/env python3
"""Writes tests/fixtures/layout_tokens.json: layouts (objects, crop, flip) → token ids and token ids →
objects, from taming-transformers' own ObjectsBoundingBoxConditionalBuilder, the parity reference for
src/models/layout.rs (tests/layout_tokens.rs).

Reference: the builder files of CompVis/taming-transformers, vendored verbatim under
tools/reference/taming (no PyPI package ships them; see tools/reference/README.md). Only
taming/data/image_transforms.py (torchvision, used by `plot` alone) is replaced by a stub module.

The builder shuffles the objects with Python's global `random` before anything else. The script seeds
`random` per case and wraps `random.shuffle` to record the order the builder actually used; each
case's `objects` are written in that order, which is the order the Rust port (which never shuffles)
must be given to produce the same ids.

Floats are written as strings (Python's repr, shortest round trip) because serde_json's default
number parser is not always correctly rounded; Rust's `str::parse::<f64>` is.

Set up: /opt/torchref/bin/python -m pip install more-itertools (plus torch and Pillow, which the
builder modules import)
Run:    /opt/torchref/bin/python tools/gen_layout_fixture.py
"""
import json
import os
import random
import sys
import types
import warnings

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))

stub = types.ModuleType("taming.data.image_transforms")
def _no_plot(image):
    raise NotImplementedError("the fixture never plots")


stub.convert_pil_to_tensor = _no_plot
sys.modules["taming.data.image_transforms"] = stub

import torch  # noqa: E402
from taming.data.conditional_builder.objects_bbox import ObjectsBoundingBoxConditionalBuilder  # noqa: E402
from taming.data.helper_types import Annotation  # noqa: E402

# The released layout2img-openimages256 model: 30 objects × 3 tokens + 2 crop tokens = 92 = the BERT's
# max_seq_len. Values from taming's configs/open_images_scene_images_transformer.yaml (its block_size
# comment says "256 + 92"); 340 classes = the 352 names of top_300_classes_plus_coco_compatibility less
# the 12 ids open_images_unify_categories_for_coco folds into others.
CONFIGS = {
    "openimages256": dict(no_object_classes=340, no_max_objects=30, no_tokens=8192, encode_crop=True,
                          use_group_parameter=True, use_additional_parameters=True),
    # boxes rescaled into the crop instead of crop tokens; group flag only
    "crop_rescaled": dict(no_object_classes=80, no_max_objects=8, no_tokens=1024, encode_crop=False,
                          use_group_parameter=True, use_additional_parameters=False),
    # the docstring's 4×4 grid: coordinate token 15 equals the none token; no flags
    "tiny_grid": dict(no_object_classes=3, no_max_objects=4, no_tokens=16, encode_crop=True,
                      use_group_parameter=False, use_additional_parameters=False),
}
ATTRS = ("is_group_of", "is_occluded", "is_depiction", "is_inside")


def s(x):
    return repr(float(x))


def rand_box(rng, lo=0.0, hi=1.0):
    x0, x1 = sorted(rng.uniform(lo, hi) for _ in range(2))
    y0, y1 = sorted(rng.uniform(lo, hi) for _ in range(2))
    return [x0, y0, x1, y1]


def obj(class_id, box, attrs=(False,) * 4):
    return {"class_id": class_id, "box": box, "attrs": list(attrs)}


def rand_objects(rng, n, n_classes, flags=True):
    return [obj(rng.randrange(n_classes), rand_box(rng),
                tuple(rng.random() < 0.3 for _ in ATTRS) if flags else (False,) * 4) for _ in range(n)]


def annotation(i, o):
    x0, y0, x1, y1 = o["box"]
    # the dataset's (x0, y0, w, h); the Rust port computes w = x1 - x0 the same way
    return Annotation(area=(x1 - x0) * (y1 - y0), image_id="0", bbox=(x0, y0, x1 - x0, y1 - y0),
                      category_no=o["class_id"], category_id=str(o["class_id"]), id=i,
                      **dict(zip(ATTRS, o["attrs"])))


def inverse(builder, ids):
    objects, crop = builder.inverse_build(torch.LongTensor(ids))
    out = []
    for representation, bbox in objects:
        a = builder.representation_to_annotation(representation)
        out.append({"representation": representation, "class_id": a.category_no,
                    "attrs": [getattr(a, k) for k in ATTRS], "xywh": [s(v) for v in bbox]})
    return {"objects": out, "crop_xywh": None if crop is None else [s(v) for v in crop]}


def build_case(name, cfg, objects, seed, crop=None, flip=False):
    builder = ObjectsBoundingBoxConditionalBuilder(**CONFIGS[cfg])
    anns = [annotation(i, o) for i, o in enumerate(objects)]
    crop_xywh = None if crop is None else (crop[0], crop[1], crop[2] - crop[0], crop[3] - crop[1])
    order = []
    real_shuffle = random.shuffle

    def recording_shuffle(x):
        real_shuffle(x)
        order.extend(a.id for a in x)

    random.seed(seed)
    random.shuffle = recording_shuffle
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Did not receive any annotations."
            ids = builder.build(anns, crop_xywh, flip).tolist()
    finally:
        random.shuffle = real_shuffle
    assert len(ids) == builder.embedding_dim
    shuffled = [objects[i] for i in order]
    return {"name": name, "config": cfg,
            "objects": [dict(o, box=[s(v) for v in o["box"]]) for o in shuffled],
            "crop": None if crop is None else [s(v) for v in crop], "flip": flip,
            "ids": ids, "inverse": inverse(builder, ids)}


def inverse_case(name, cfg, ids):
    builder = ObjectsBoundingBoxConditionalBuilder(**CONFIGS[cfg])
    return {"name": name, "config": cfg, "ids": ids, "inverse": inverse(builder, ids)}


def grid_ties(n_sections, count):
    """Coordinates x with x·(n−1) exactly m + 0.5 in f64: Python's round() takes the even neighbour."""
    out = []
    for m in range(n_sections - 1):
        x = (m + 0.5) / (n_sections - 1)
        if x * (n_sections - 1) == m + 0.5:
            out.append(x)
    return out[:count]


def main():
    rng = random.Random(20211220)
    cases = []
    oi = "openimages256"
    cases.append(build_case("empty", oi, [], 1))
    cases.append(build_case("one_object", oi, [obj(17, [0.1, 0.2, 0.6, 0.9])], 2))
    cases.append(build_case("many_objects", oi, rand_objects(rng, 12, 340), 3))
    cases.append(build_case("max_objects", oi, rand_objects(rng, 30, 340), 4))
    cases.append(build_case("touching_borders", oi, [
        obj(0, [0.0, 0.0, 1.0, 1.0]), obj(5, [0.0, 0.3, 0.4, 1.0]), obj(9, [0.7, 0.0, 1.0, 0.2]),
        obj(339, [0.0, 0.0, 0.0 + 1e-3, 1.0], (True, True, True, True))], 5))
    tiny = [obj(rng.randrange(340), [x, y, x + 1e-4, y + 3e-4]) for x, y in
            ((rng.random() * 0.99, rng.random() * 0.99) for _ in range(6))]
    tiny.append(obj(3, [0.4, 0.4, 0.4, 0.8]))  # zero width: no overlap with the crop, dropped
    tiny.append(obj(4, [0.2, 0.7, 0.9, 0.7]))  # zero height: dropped
    cases.append(build_case("tiny_and_degenerate_boxes", oi, tiny, 6))
    ties = grid_ties(90, 12)
    tie_objs = [obj(i, [t, ties[-1 - i], 1.0, 1.0]) for i, t in enumerate(ties)]
    tie_objs += [obj(1, [0.5, 0.5, 1.0, 1.0]), obj(2, [0.25, 0.25, 0.5, 0.5])]  # 0.5·89 = 44.5 → 44
    cases.append(build_case("half_grid_ties", oi, tie_objs, 7))
    cases.append(build_case("all_attribute_combinations", oi, [
        obj(100 + k, rand_box(rng), tuple(bool(k >> b & 1) for b in range(4))) for k in range(16)], 8))
    crop = [0.15, 0.05, 0.85, 0.75]
    crop_objs = rand_objects(rng, 10, 340) + [obj(7, [0.9, 0.8, 1.0, 1.0]),  # outside the crop
                                              obj(8, [0.0, 0.0, 0.15, 0.3])]  # touches it: zero overlap
    cases.append(build_case("crop_tokens", oi, crop_objs, 9, crop=crop))
    cases.append(build_case("crop_tokens_flipped", oi, crop_objs, 10, crop=crop, flip=True))
    cases.append(build_case("flip_full_crop", oi, rand_objects(rng, 5, 340), 11, flip=True))
    rc = [rng.uniform(0, 0.3), rng.uniform(0, 0.3), rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)]
    cases.append(build_case("crop_rescaled", "crop_rescaled", rand_objects(rng, 8, 80), 12, crop=rc))
    cases.append(build_case("crop_rescaled_flipped", "crop_rescaled", rand_objects(rng, 6, 80), 13, crop=rc,
                            flip=True))
    cases.append(build_case("crop_rescaled_no_crop", "crop_rescaled", rand_objects(rng, 3, 80), 14))
    cases.append(build_case("tiny_grid", "tiny_grid", rand_objects(rng, 4, 3), 15))
    cases.append(build_case("tiny_grid_crop", "tiny_grid", rand_objects(rng, 2, 3), 16, crop=[0.0, 0.5, 0.5, 1.0]))
    # arbitrary token sequences (what a model might emit): coordinate tokens past the grid (y > 1),
    # class tokens past 16 × classes
    for k, cfg in enumerate(["openimages256", "openimages256", "crop_rescaled", "tiny_grid"]):
        c = CONFIGS[cfg]
        n = c["no_max_objects"] * 3 + (2 if c["encode_crop"] else 0)
        ids = [rng.randrange(c["no_tokens"]) for _ in range(n)]
        for j in range(0, c["no_max_objects"] * 3, 3):
            if rng.random() < 0.3:
                ids[j] = c["no_tokens"] - 1
        cases.append(inverse_case(f"inverse_random_{k}_{cfg}", cfg, ids))

    out = {
        "reference": "CompVis/taming-transformers@3ba01b241669f5ade541ce990f7650a3b8f65318 "
                     "taming/data/conditional_builder/objects_bbox.py (vendored in tools/reference)",
        "configs": CONFIGS,
        "cases": cases,
    }
    path = os.path.join(ROOT, "tests", "fixtures", "layout_tokens.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
