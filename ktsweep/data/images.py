"""Image folders, the classic Keras input: one subfolder per class, read as ``tf.data`` in each worker.

``data=image_folder data.path=DIR`` reads DIR as ``keras.utils.image_dataset_from_directory``
does (class names from the subfolders, sorted; ``validation_split`` with a seed; an optional
``test_path`` laid out the same way), then ``cache()`` and ``prefetch``: each worker decodes the
files once and keeps them for the trials it runs. The folder is checked before any trial (class
subfolders, at least two classes, files that are images), in the worker's probe, so the driver
never lists or reads it. The probe only describes it (``describe_image_folder``: the listing and a
few images, no TensorFlow), so its worker is up in about a second beside the trials' own.

``python -m ktsweep.data.images DIR [--copies N]`` writes scikit-learn's digits as such a folder
(8x8 grayscale PNGs), the one the tests, the preset and ``bench/data_pipelines.py`` use.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

from ktsweep.core.errors import UsageError
from ktsweep.data.splits import Description, Splits

if TYPE_CHECKING:
    import numpy as np

EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # what image_dataset_from_directory reads
MAGIC = {".png": (b"\x89PNG",), ".jpg": (b"\xff\xd8",), ".jpeg": (b"\xff\xd8",), ".gif": (b"GIF8",), ".bmp": (b"BM",)}


def list_images(path: str, what: str) -> tuple[list[str], list[str]]:
    """The class names and the image files (relative, sorted) of a folder, as Keras indexes them; one line
    for a missing folder, no class subfolders, a single class or a file that is not the image it says."""
    folder = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(folder):
        raise UsageError(f"image folder not found: {folder}; set {what} to a folder with one subfolder per class")
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    files = [os.path.relpath(os.path.join(root, name), folder)
             for label in classes for root, _, names in sorted(os.walk(os.path.join(folder, label)))
             for name in sorted(names) if name.lower().endswith(EXTENSIONS)]
    if not classes or not files:
        raise UsageError(
            f"{folder} has no class subfolders with images; put each class's images in a subfolder of its own "
            f"({folder}/CLASS_A/*.png, {folder}/CLASS_B/*.png)"
        )
    used = sorted({name.split(os.sep, 1)[0] for name in files})
    if len(used) < 2:
        raise UsageError(f"{folder} holds images of one class only ({used[0]}); a classifier needs two or more "
                         "class subfolders")
    bad = [name for name in files if not _looks_like_image(os.path.join(folder, name))]
    if bad:
        raise UsageError(f"{folder}: {len(bad)} file(s) are not readable images, e.g. {bad[0]}; remove or replace "
                         "them (Keras reads .png, .jpg, .jpeg, .gif and .bmp)")
    return classes, files


def _looks_like_image(path: str) -> bool:
    """The file's first bytes are its format's signature (an 8-byte read, not a decode)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return False
    return head.startswith(MAGIC[os.path.splitext(path)[1].lower()])


def folder_digest(listing: Sequence[tuple[str, str]]) -> str:
    """Names what was read: each (folder, file) with the file's size, in order (12 hex digits, as a file's digest)."""
    digest = hashlib.sha256()
    for folder, name in listing:
        digest.update(f"{os.path.basename(folder)}/{name}\0{os.path.getsize(os.path.join(folder, name))}\n".encode())
    return digest.hexdigest()[:12]


COLOR_CHANNELS = {"grayscale": ("L", 1), "rgb": ("RGB", 3), "rgba": ("RGBA", 4)}  # Pillow's mode, channels


@dataclass
class _Layout:
    """A folder as Keras splits it: classes, files, examples per split, and what was read (with a test folder)."""

    folder: str
    classes: list[str]
    files: list[str]
    sizes: dict[str, int]
    listing: list[tuple[str, str]]
    test_folder: Optional[str] = None


def _layout(path: str, validation_split: float, test_path: Optional[str], color_mode: str) -> _Layout:
    folder = os.path.abspath(os.path.expanduser(path))
    classes, files = list_images(folder, "data.path")
    n_val = int(validation_split * len(files))  # as image_dataset_from_directory splits
    if not 0 < n_val < len(files):
        raise UsageError(f"{folder} has {len(files)} images: data.validation_split={validation_split:g} leaves "
                         f"{'no validation' if n_val == 0 else 'no training'} images; add images or change the split")
    layout = _Layout(folder, classes, files, {"train": len(files) - n_val, "val": n_val},
                     [(folder, name) for name in files])
    if test_path:
        test_folder = os.path.abspath(os.path.expanduser(test_path))
        test_classes, test_files = list_images(test_folder, "data.test_path")
        if test_classes != classes:
            raise UsageError(f"data.test_path has classes {', '.join(test_classes)} but data.path has "
                             f"{', '.join(classes)}; give both folders the same class subfolders")
        layout.test_folder, layout.sizes["test"] = test_folder, len(test_files)
        layout.listing += [(test_folder, name) for name in test_files]
    _check_decodable(layout.listing, color_mode)
    return layout


def load_image_folder(
    *, path: str, image_size: Sequence[int] = (64, 64), color_mode: str = "rgb", batch_size: int = 32,
    validation_split: float = 0.2, seed: int = 42, test_path: Optional[str] = None, cache: bool = True,
) -> Splits:
    """Train and validation from ``path`` (seeded split), test from ``test_path``; runs in each worker."""
    import keras
    import tensorflow as tf

    layout = _layout(path, validation_split, test_path, color_mode)
    options = dict(labels="inferred", label_mode="int", class_names=layout.classes, color_mode=color_mode,
                   image_size=tuple(image_size), batch_size=batch_size, seed=seed, verbose=False,
                   data_format="channels_last")  # as described, whatever keras.json says
    train, val = keras.utils.image_dataset_from_directory(layout.folder, validation_split=validation_split,
                                                          subset="both", shuffle=True, **options)
    test = (keras.utils.image_dataset_from_directory(layout.test_folder, shuffle=False, **options)
            if layout.test_folder else None)

    def ready(dataset: "tf.data.Dataset") -> "tf.data.Dataset":
        return (dataset.cache() if cache else dataset).prefetch(tf.data.AUTOTUNE)

    return Splits(ready(train), ready(val), ready(test) if test is not None else None, class_names=layout.classes,
                  task="classification", sizes=layout.sizes, files=len(layout.listing),
                  digest=folder_digest(layout.listing))


def describe_image_folder(
    *, path: str, image_size: Sequence[int] = (64, 64), color_mode: str = "rgb", validation_split: float = 0.2,
    test_path: Optional[str] = None,
) -> Description:
    """The probe's report on a folder without TensorFlow: its listing, and a few images decoded with Pillow and
    resized as Keras resizes them (float32, bilinear: the pre-flight build's rows and the model's example)."""
    import numpy as np

    from ktsweep.data.pipelines import SAMPLE_ROWS

    layout = _layout(path, validation_split, test_path, color_mode)
    chosen = layout.files[:: max(1, len(layout.files) // SAMPLE_ROWS)][:SAMPLE_ROWS]  # across the classes
    x = np.stack([_decode(os.path.join(layout.folder, name), image_size, color_mode) for name in chosen])
    y = np.array([layout.classes.index(name.split(os.sep, 1)[0]) for name in chosen], dtype="int32")
    return Description((x, y), class_names=layout.classes, sizes=layout.sizes, files=len(layout.listing),
                       digest=folder_digest(layout.listing), has_test=layout.test_folder is not None)


load_image_folder.ktsweep_describe = describe_image_folder  # type: ignore[attr-defined]  (the probe's way: pipelines.py)

# What TensorFlow's decoders refuse, which Pillow would read: GIF decodes to RGB only, BMP to RGB or RGBA,
# JPEG to grayscale or RGB (tf.io.decode_image's channels).
UNDECODABLE = {".gif": ("grayscale", "rgba"), ".bmp": ("grayscale",), ".jpg": ("rgba",), ".jpeg": ("rgba",)}


def _check_decodable(listing: Sequence[tuple[str, str]], color_mode: str) -> None:
    refused = [os.path.join(folder, name) for folder, name in listing
               if color_mode in UNDECODABLE.get(os.path.splitext(name)[1].lower(), ())]
    if refused:
        kind = os.path.splitext(refused[0])[1].lower().lstrip(".").upper()
        raise UsageError(f"{len(refused)} {kind} file(s), e.g. {refused[0]}, cannot be read as "
                         f"data.color_mode={color_mode} (Keras reads GIF as rgb, BMP as rgb or rgba, JPEG as "
                         "grayscale or rgb); set data.color_mode, or convert them to PNG")


def _decode(path: str, image_size: Sequence[int], color_mode: str) -> "np.ndarray":
    """One image as Keras yields it (JPEG by another decoder: a few levels apart at most)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    mode, channels = COLOR_CHANNELS[color_mode]
    try:
        with Image.open(path) as image:
            if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grayscale: TensorFlow keeps the high byte
                image = Image.fromarray((np.asarray(image, dtype="uint32") >> 8).astype("uint8"), "L")
            pixels = np.asarray(image.convert(mode), dtype="float32")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable image ({exc}); remove or replace it") from None
    pixels = pixels.reshape(*pixels.shape[:2], channels)
    return _resize_bilinear(pixels, (int(image_size[0]), int(image_size[1])))


def _resize_bilinear(pixels: "np.ndarray", size: tuple[int, int]) -> "np.ndarray":
    """``tf.image.resize(..., "bilinear")``: half-pixel centres, no antialiasing (Pillow's smooths when shrinking)."""
    import numpy as np

    for axis, out in enumerate(size):
        size_in = pixels.shape[axis]
        if size_in == out:
            continue
        centres = np.clip((np.arange(out) + 0.5) * size_in / out - 0.5, 0, size_in - 1)
        low = np.floor(centres).astype(int)
        high = np.minimum(low + 1, size_in - 1)
        weight = (centres - low).reshape([-1 if a == axis else 1 for a in range(pixels.ndim)]).astype("float32")
        pixels = np.take(pixels, low, axis=axis) * (1 - weight) + np.take(pixels, high, axis=axis) * weight
    return pixels.astype("float32")


def write_digits_folder(path: str, *, copies: int = 1) -> int:
    """scikit-learn's 1,797 digits as 8x8 grayscale PNGs under ``path/<digit>/``; ``copies`` repeats each
    (a folder ``copies`` times larger, for the driver-memory test). Returns the number of files written."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.clip(bunch.images * 16, 0, 255).astype("uint8")
    written = 0
    for label in range(10):
        os.makedirs(os.path.join(path, str(label)), exist_ok=True)
    for index, (image, label) in enumerate(zip(pixels, bunch.target)):
        for copy in range(copies):
            Image.fromarray(image, mode="L").save(os.path.join(path, str(label), f"{index:04d}_{copy}.png"))
            written += 1
    return written


def main(argv: Optional[Sequence[str]] = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Write scikit-learn's digits as an image folder (one subfolder per class).")
    parser.add_argument("path")
    parser.add_argument("--copies", type=int, default=1, help="write each image this many times")
    args = parser.parse_args(argv)
    count = write_digits_folder(args.path, copies=args.copies)
    print(f"wrote {count} PNG files to {os.path.abspath(args.path)}")


if __name__ == "__main__":
    main()
