"""Image folders, the classic Keras input: one subfolder per class, read as ``tf.data`` in each worker.

``data=image_folder data.path=DIR`` reads DIR as ``keras.utils.image_dataset_from_directory``
does (class names from the subfolders, sorted; ``validation_split`` with a seed; an optional
``test_path`` laid out the same way), then ``cache()`` and ``prefetch``: each worker decodes the
files once and keeps them for the trials it runs. The folder is checked before any trial (class
subfolders, at least two classes, files that are images), in the worker's probe, so the driver
never lists or reads it.

``python -m ktsweep.data.images DIR [--copies N]`` writes scikit-learn's digits as such a folder
(8x8 grayscale PNGs), the one the tests, the preset and ``bench/data_pipelines.py`` use.
"""

from __future__ import annotations

import hashlib
import os
from typing import Optional, Sequence

from ktsweep.core.errors import UsageError
from ktsweep.data.splits import Splits

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


def load_image_folder(
    *, path: str, image_size: Sequence[int] = (64, 64), color_mode: str = "rgb", batch_size: int = 32,
    validation_split: float = 0.2, seed: int = 42, test_path: Optional[str] = None, cache: bool = True,
) -> Splits:
    """Train and validation from ``path`` (seeded split), test from ``test_path``; runs in each worker."""
    import keras
    import tensorflow as tf

    folder = os.path.abspath(os.path.expanduser(path))
    classes, files = list_images(folder, "data.path")
    options = dict(labels="inferred", label_mode="int", class_names=classes, color_mode=color_mode,
                   image_size=tuple(image_size), batch_size=batch_size, seed=seed, verbose=False)
    train, val = keras.utils.image_dataset_from_directory(folder, validation_split=validation_split, subset="both",
                                                          shuffle=True, **options)
    n_val = int(validation_split * len(files))
    sizes = {"train": len(files) - n_val, "val": n_val}
    listing = [(folder, name) for name in files]
    test = None
    if test_path:
        test_folder = os.path.abspath(os.path.expanduser(test_path))
        test_classes, test_files = list_images(test_folder, "data.test_path")
        if test_classes != classes:
            raise UsageError(f"data.test_path has classes {', '.join(test_classes)} but data.path has "
                             f"{', '.join(classes)}; give both folders the same class subfolders")
        test = keras.utils.image_dataset_from_directory(test_folder, shuffle=False, **options)
        sizes["test"] = len(test_files)
        listing += [(test_folder, name) for name in test_files]

    def ready(dataset: "tf.data.Dataset") -> "tf.data.Dataset":
        return (dataset.cache() if cache else dataset).prefetch(tf.data.AUTOTUNE)

    return Splits(ready(train), ready(val), ready(test) if test is not None else None, class_names=classes,
                  task="classification", sizes=sizes, files=len(listing), digest=folder_digest(listing))


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
