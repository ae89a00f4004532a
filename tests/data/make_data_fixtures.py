#!/usr/bin/python3
"""Writes the small committed fixtures of the data tests into tests/fixtures/data/.

Run with Debian's /usr/bin/python3 (numpy, h5py). Pixel values follow closed formulas that the
C tests recompute on their own, so the tests check values, not copies of our output:
  tiny idx   N=20, H=6, W=5:          pixel = (37 i + 11 y + 5 x) % 256,           label = i % 4
  tiny_u8.h5 N=20, H=6, W=5, C=3:     pixel = (37 i + 11 y + 5 x + 50 c) % 256,    label = i % 3,
             class_names "alpha", "beta", "gamma" (variable-length strings)
  tiny_f32.h5 N=10, C=1, H=4, W=4:    value = ((13 i + 4 y + x) % 17) / 16,        label = i % 2 (int64),
             class_names "even", "odd" (fixed-length strings)
  pil_reference.h5: PIL's own results, the reference for our transforms:
    texture [10,12,3] = (10 + 5 x + 7 y + 40 c + (x y) % 13) % 256; <timm op name>[_neg] = that
    op at magnitude 9 (timm's level-to-argument formulas, fill = DeiT's mean colour (124,116,104),
    bilinear resampling, "_bicubic": bicubic as timm with DeiT's interpolation), "_neg" with the
    random sign taken negative, stacked in `ops` [n,10,12,3]
    with their names in `op_names`;
    smooth [30,40,3] = min(255, 20 + 2 x + 2 y + 30 c + ((x-20)^2 + (y-15)^2) // 16);
    smooth_equalize = ImageOps.equalize(smooth) (Equalize is the identity below 256 pixels);
    eval_32 = torchvision's eval transform of smooth at size 32, crop_pct 0.875: PIL bicubic resize
    of the short side to int(32 / 0.875) = 36 (long side int(36 * 40 / 30) = 48), centre crop 32
    at left round((48-32)/2) = 8, top round((36-32)/2) = 2.
  smooth<i>.jpg (i = 0, 3, 5): JPEG, quality 100, no chroma subsampling, of
    pixel = 60 + 10 i + 2 x + y + 20 c, 12x10 (i = 3, 5) and 64x48 (i = 0, cut in half by the tests).
    (stb_image_write's JPEG encoder trips UBSan, so JPEGs are committed rather than made at test time.)
  smooth7p.jpg: the same formula at i = 7, 12x10, quality 100, no chroma subsampling, progressive
    (its scans decode with the DC tables in the first DC scan only, the AC tables in AC scans).
PNG/BMP folders and the other broken files are written by the tests themselves
(tests/data/data_fixtures.h).
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

    pil_reference()
    smooth_jpegs()


def pil_reference():
    from PIL import Image, ImageEnhance, ImageOps

    y, x, c = np.meshgrid(np.arange(10), np.arange(12), np.arange(3), indexing="ij")
    texture = ((10 + 5 * x + 7 * y + 40 * c + (x * y) % 13) % 256).astype(np.uint8)
    img = Image.fromarray(texture, "RGB")
    fill = (124, 116, 104)
    bil = Image.Resampling.BILINEAR
    m = 9 / 10.0  # magnitude 9 as a fraction of timm's _LEVEL_DENOM

    def affine(im, data, resample):
        return im.transform(im.size, Image.AFFINE, data, resample=resample, fillcolor=fill)

    def solarize_add(im, add, thresh=128):
        lut = [min(255, i + add) if i < thresh else i for i in range(256)]
        return im.point(lut * 3)

    def enhance_inc(cls, neg):
        v = m * 0.9
        return lambda im: cls(im).enhance(max(0.1, 1.0 + (-v if neg else v)))

    ops = {
        "AutoContrast": ImageOps.autocontrast,
        "Equalize": ImageOps.equalize,
        "Invert": ImageOps.invert,
        "PosterizeIncreasing": lambda im: ImageOps.posterize(im, 4 - int(m * 4)),
        "Posterize": lambda im: ImageOps.posterize(im, int(m * 4)),
        "SolarizeIncreasing": lambda im: ImageOps.solarize(im, 256 - int(m * 256)),
        "Solarize": lambda im: ImageOps.solarize(im, int(m * 256)),
        "SolarizeAdd": lambda im: solarize_add(im, int(m * 110)),
        "Color": lambda im: ImageEnhance.Color(im).enhance(m * 1.8 + 0.1),
        "Contrast": lambda im: ImageEnhance.Contrast(im).enhance(m * 1.8 + 0.1),
        "Brightness": lambda im: ImageEnhance.Brightness(im).enhance(m * 1.8 + 0.1),
        "Sharpness": lambda im: ImageEnhance.Sharpness(im).enhance(m * 1.8 + 0.1),
    }
    for neg in (False, True):
        sfx = "_neg" if neg else ""
        sign = -1.0 if neg else 1.0
        for name, cls in (("Color", ImageEnhance.Color), ("Contrast", ImageEnhance.Contrast),
                          ("Brightness", ImageEnhance.Brightness), ("Sharpness", ImageEnhance.Sharpness)):
            ops[name + "Increasing" + sfx] = enhance_inc(cls, neg)
        for rs, rsfx in ((bil, ""), (Image.Resampling.BICUBIC, "_bicubic")):
            k = sfx + rsfx
            ops["Rotate" + k] = lambda im, s=sign, r=rs: im.rotate(s * m * 30.0, resample=r, fillcolor=fill)
            ops["ShearX" + k] = lambda im, s=sign, r=rs: affine(im, (1, s * m * 0.3, 0, 0, 1, 0), r)
            ops["ShearY" + k] = lambda im, s=sign, r=rs: affine(im, (1, 0, 0, s * m * 0.3, 1, 0), r)
            ops["TranslateXRel" + k] = lambda im, s=sign, r=rs: affine(im, (1, 0, s * m * 0.45 * im.size[0], 0, 1, 0), r)
            ops["TranslateYRel" + k] = lambda im, s=sign, r=rs: affine(im, (1, 0, 0, 0, 1, s * m * 0.45 * im.size[1]), r)

    y, x, c = np.meshgrid(np.arange(30), np.arange(40), np.arange(3), indexing="ij")
    smooth = np.minimum(255, 20 + 2 * x + 2 * y + 30 * c + ((x - 20) ** 2 + (y - 15) ** 2) // 16).astype(np.uint8)
    resized = Image.fromarray(smooth, "RGB").resize((48, 36), Image.Resampling.BICUBIC)
    eval_32 = np.asarray(resized.crop((8, 2, 40, 34)))

    with h5py.File(os.path.join(OUT, "pil_reference.h5"), "w") as f:
        f.create_dataset("texture", data=texture)
        names = sorted(ops)
        f.create_dataset("op_names", data=names, dtype=h5py.string_dtype())
        f.create_dataset("ops", data=np.stack([np.asarray(ops[n](img)) for n in names]))
        f.create_dataset("smooth", data=smooth)
        # Equalize is the identity below 256 pixels (PIL's step is 0), so it is checked here too.
        f.create_dataset("smooth_equalize", data=np.asarray(ImageOps.equalize(Image.fromarray(smooth, "RGB"))))
        f.create_dataset("eval_32", data=eval_32)


def smooth_jpegs():
    from PIL import Image

    for i, (w, h) in ((0, (64, 48)), (3, (12, 10)), (5, (12, 10))):
        y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
        px = (60 + 10 * i + 2 * x + y + 20 * c).astype(np.uint8)
        Image.fromarray(px, "RGB").save(os.path.join(OUT, "smooth%d.jpg" % i), quality=100, subsampling=0)
    y, x, c = np.meshgrid(np.arange(10), np.arange(12), np.arange(3), indexing="ij")
    px = (60 + 10 * 7 + 2 * x + y + 20 * c).astype(np.uint8)
    Image.fromarray(px, "RGB").save(os.path.join(OUT, "smooth7p.jpg"), quality=100, subsampling=0, progressive=True)


if __name__ == "__main__":
    main()
