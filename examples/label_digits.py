"""A folder of digit images to label, and a labeling project on it (the README's worked example).

    python examples/label_digits.py label-demo                 # 1,000 scikit-learn digits (offline)
    python examples/label_digits.py label-demo --source mnist  # MNIST test images from $ROBUSTAL_DATA
    python examples/label_digits.py label-demo --answer 300    # ... and a simulated annotator labels 300

Writes ``OUT/images/img-NNNNN.png`` (names say nothing about the class), ``OUT/answers.csv``
(``path,label``: the true classes, to check your labels against), then runs
``robustal label init OUT/project`` with a small robust protocol: 100 validation images, 50
initial, 50 per round up to 300 training labels, DRE, PGD training (MNIST: the ``quick`` preset,
LeNet-5 at 32x32, eps 0.3; the 8x8 digits: a small CNN at 8x8, eps 0.1, as `robustal demo`).
Then ``robustal label serve OUT/project`` opens the labeling page.

``--answer N`` plays the annotator instead of you: it labels the first N images the project asks
with the true classes, through `LabelProject` as the page does (starting the background training
after every label), waits for the rounds and prints them.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

INIT_FLAGS = [
    "--classes", ",".join(str(digit) for digit in range(10)), "--preset", "quick", "--validation", "100",
    "--initial", "50", "--per-round", "50", "--budget", "300", "--acquisition", "dre", "--seed", "0",
]  # fmt: skip
# 8x8 digits: the digits protocol of the quick preset (small CNN at 8x8, eps 0.1) instead of MNIST's
DIGITS_FLAGS = [
    "--model", "small_cnn", "--image-size", "8", "--eps", "0.1", "--step-size", "0.025", "--train-steps", "7",
    "--eval-steps", "20", "--epochs", "8",
]  # fmt: skip


def digit_images(source: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` uint8 grayscale images (N, H, W) and their classes, in a seeded random order."""
    if source == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, labels = (digits.images * (255 / 16)).round().astype(np.uint8), digits.target
    else:
        from robustal.data import load_dataset

        test = load_dataset("mnist", image_size=28).test  # the data root: $ROBUSTAL_DATA or ~/.cache/robustal
        images, labels = test.images[:, 0].numpy(), test.labels.numpy()
    if not 0 < count <= len(images):
        raise SystemExit(f"--count must be in 1..{len(images)} for {source}")
    chosen = np.random.default_rng(0).permutation(len(images))[:count]
    return images[chosen], labels[chosen]


def write_folder(out: Path, source: str, count: int) -> Path:
    """The images as PNG files in ``out/images`` and the true classes in ``out/answers.csv``."""
    folder = out / "images"
    folder.mkdir(parents=True)
    images, labels = digit_images(source, count)
    with (out / "answers.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for number, (pixels, label) in enumerate(zip(images, labels)):
            path = folder / f"img-{number:05d}.png"
            Image.fromarray(pixels).save(path)
            writer.writerow([str(path.resolve()), int(label)])
    return folder


def answer(project_dir: Path, answers: Path, count: int) -> None:
    """Label the first `count` asked images with the true classes, as the page would; print the rounds."""
    from robustal.label.project import LabelProject

    truth = {row["path"]: int(row["label"]) for row in csv.DictReader(answers.open())}
    project = LabelProject.open(project_dir)
    labeled, waited, start = 0, 0.0, time.perf_counter()
    while labeled < count:
        item = project.next_item("simulated")
        if item is None:
            if project.progress().finished:
                break
            time.sleep(0.2)  # the next round is training: its items come soon
            waited += 0.2
            continue
        project.label(item.id, truth[item.path], "simulated")
        project.maybe_start_training()
        labeled += 1
    while project.progress().training:
        time.sleep(0.2)
    print(f"labeled {labeled} images in {time.perf_counter() - start:.0f}s, of which {waited:.0f}s waiting for a round to train")
    for summary in project.rounds():
        print(
            f"round {summary.round}: {summary.labeled} training labels, validation accuracy "
            f"{100 * summary.clean_accuracy:.1f}%, robust {100 * summary.robust_accuracy:.1f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a new folder: images/, answers.csv, project/")
    parser.add_argument("--source", choices=("digits", "mnist"), default="digits")
    parser.add_argument("--count", type=int, default=1000, help="images to write")
    parser.add_argument("--answer", type=int, default=0, help="labels a simulated annotator gives (0: you label)")
    arguments = parser.parse_args()
    if arguments.out.exists():
        raise SystemExit(f"{arguments.out} exists; choose a new folder")
    folder = write_folder(arguments.out, arguments.source, arguments.count)
    project = arguments.out / "project"
    flags = INIT_FLAGS + (DIGITS_FLAGS if arguments.source == "digits" else [])
    command = [sys.executable, "-m", "robustal", "label", "init", str(project), "--images", str(folder), *flags]
    print("$ robustal label init", " ".join(command[5:]), flush=True)
    subprocess.run(command, check=True)
    if arguments.answer:
        answer(project, arguments.out / "answers.csv", arguments.answer)


if __name__ == "__main__":
    main()
