#!/usr/bin/python3
"""Writes the small committed fixtures of the data tests into tests/fixtures/data/.

Run with Debian's /usr/bin/python3 (numpy, h5py). Pixel values follow closed formulas that the
C tests recompute on their own, so the tests check values, not copies of our output:
  tiny idx   N=20, H=6, W=5:          pixel = (37 i + 11 y + 5 x) % 256,           label = i % 4
  tiny_u8.h5 N=20, H=6, W=5, C=3:     pixel = (37 i + 11 y + 5 x + 50 c) % 256,    label = i % 3,
             class_names "alpha", "beta", "gamma" (variable-length strings)
  tiny_f32.h5 N=10, C=1, H=4, W=4:    value = ((13 i + 4 y + x) % 17) / 16,        label = i % 2 (int64),
             class_names "even", "odd" (fixed-length strings)
Images made at test time (PNG/JPEG/BMP folders, broken files) are written by the tests themselves
(tests/data/fixtures.h), so no image files are committed.
"""
import gzip
import os
import struct

import h5py
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "data")


def idx_bytes(array, ndim):
    head = struct.pack(">I", 0x800 | ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return head + array.astype(np.uint8).tobytes()


def write_gz(path, data):
    # mtime=0 keeps the file byte-identical between runs.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    n, h, w = 20, 6, 5
    i, y, x = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), indexing="ij")
    images = (37 * i + 11 * y + 5 * x) % 256
    labels = np.arange(n) % 4
    write_gz(os.path.join(OUT, "tiny-images-idx3-ubyte.gz"), idx_bytes(images, 3))
    write_gz(os.path.join(OUT, "tiny-labels-idx1-ubyte.gz"), idx_bytes(labels, 1))
    with open(os.path.join(OUT, "plain-images-idx3-ubyte"), "wb") as f:
        f.write(idx_bytes(images, 3))
    with open(os.path.join(OUT, "plain-labels-idx1-ubyte"), "wb") as f:
        f.write(idx_bytes(labels, 1))

    i, y, x, c = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    u8 = ((37 * i + 11 * y + 5 * x + 50 * c) % 256).astype(np.uint8)
    with h5py.File(os.path.join(OUT, "tiny_u8.h5"), "w", track_order=False) as f:
        f.create_dataset("images", data=u8)
        f.create_dataset("labels", data=(np.arange(n) % 3).astype(np.int32))
        f.create_dataset("class_names", data=["alpha", "beta", "gamma"], dtype=h5py.string_dtype())

    n2 = 10
    i, c, y, x = np.meshgrid(np.arange(n2), np.arange(1), np.arange(4), np.arange(4), indexing="ij")
    f32 = (((13 * i + 4 * y + x) % 17) / 16.0).astype(np.float32)
    with h5py.File(os.path.join(OUT, "tiny_f32.h5"), "w") as f:
        f.create_dataset("images", data=f32)
        f.create_dataset("labels", data=(np.arange(n2) % 2).astype(np.int64))
        f.create_dataset("class_names", data=np.array([b"even", b"odd"], dtype="S4"))


if __name__ == "__main__":
    main()
