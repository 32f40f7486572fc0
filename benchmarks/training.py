"""Adversarial training and robust evaluation speed: robustal against a paper-style loop.

Measures images per second of (a) PGD adversarial training epochs (PGD-40, batch 100) and
(b) PGD-50 evaluation, for LeNet-5 on MNIST (32 x 32) and ResNet18 on CIFAR-shaped inputs
(random 3 x 32 x 32 images: only the speed is measured there). Every variant runs in the same
process, interleaved (epoch by epoch for training, chunk by chunk for evaluation), so that the
load of the shared machine falls on all of them alike; the report gives ratios to the baseline.

The **baseline** is written the way the paper's code does it: fp32, batch 100 through a
DataLoader, a fresh attack object per epoch, the attack calls ``loss.backward()`` (so it also
computes the parameters' gradients, advertorch-style), ``.item()`` per batch for the running
loss and the correct counts, host-to-device transfers per batch. Its arithmetic is the same as
robustal's (PGD with random start and sign steps on the eval-mode model, loss on the PGD
examples in train mode), so after the same training both must reach the same robust accuracy
(within 1 point, checked on LeNet-5 / MNIST).

**robustal** variants use `robustal.training.fit` and `robustal.evaluation.evaluate` with the
speed settings of each variant: precision (fp32 / bf16 autocast), channels_last, BatchNorm
folding in the attacks, torch.compile, and the evaluation batch size.

    python benchmarks/training.py --threads 1                   # the full benchmark
    python benchmarks/training.py --train-images 500 --eval-images 200 --epochs 1 --no-write
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustal.attacks import PGD
from robustal.data import Split, load_dataset
from robustal.evaluation import evaluate
from robustal.models import build_model
from robustal.runtime import batch_slices, prepare_model, select_device
from robustal.seeding import torch_generator
from robustal.training import build_regime, fit, make_optimizer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results" / "training.md"
EPS, STEP_SIZE, BATCH_SIZE, LR = 0.3, 0.01, 100, 1e-3


# --------------------------------------------------------------------------- the paper-style loop
class PaperStylePGD:
    """PGD as the paper's code runs it: ``loss.backward()`` on the whole graph, so parameter
    gradients are computed (and accumulated) at every step; torchattacks' arithmetic (the same
    as robustal's: step on the adversarial image, clip the perturbation, clip to [0, 1])."""

    def __init__(self, model: nn.Module, eps: float, step_size: float, steps: int) -> None:
        self.model, self.eps, self.step_size, self.steps = model, eps, step_size, steps

    def perturb(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        noise = (2 * torch.rand(x.shape, generator=generator, device=x.device) - 1) * self.eps
        x_adv = (x + (x + noise - x).clamp(-self.eps, self.eps)).clamp(0, 1)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(self.model(x_adv), y, reduction="sum")
            loss.backward()
            with torch.no_grad():
                x_adv = x_adv + self.step_size * x_adv.grad.sign()
                x_adv = (x + (x_adv - x).clamp(-self.eps, self.eps)).clamp(0, 1)
        self.model.train(was_training)
        return x_adv.detach()


def baseline_train_epoch(model, optimizer, train: Split, device, steps: int, generator, shuffle) -> float:
    """One paper-style adversarial training epoch; returns the mean loss (via ``.item()``)."""
    dataset = torch.utils.data.TensorDataset(train.images.float() / 255, train.labels)
    order = torch.randperm(len(dataset), generator=shuffle).tolist()  # robustal's order, for equal results
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, sampler=order)
    adversary = PaperStylePGD(model, EPS, STEP_SIZE, steps)  # a fresh attack object per epoch
    model.train()
    running_loss = 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)  # per-batch host transfer
        x_adv = adversary.perturb(x, y, generator)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x_adv), y)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()  # host synchronisation per batch
    return running_loss / len(loader)


def baseline_evaluate(model, split: Split, device, steps: int, generator) -> float:
    """Paper-style PGD robust accuracy: fp32, batch 100, ``.item()`` per batch; counted as robustal
    counts it (correct both clean and attacked), so the two numbers compare."""
    adversary = PaperStylePGD(model, EPS, STEP_SIZE, steps)
    model.eval()
    correct = 0
    for part in batch_slices(len(split), BATCH_SIZE):
        x, y = (split.images[part].float() / 255).to(device), split.labels[part].to(device)
        x_adv = adversary.perturb(x, y, generator)
        with torch.no_grad():
            correct += ((model(x).argmax(1) == y) & (model(x_adv).argmax(1) == y)).sum().item()
    return correct / len(split)


# --------------------------------------------------------------------------- variants
@dataclass
class Variant:
    """One way of training and evaluating: the baseline, or robustal with speed settings."""

    name: str
    baseline: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    fold_batchnorm: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    eval_batch_size: int = 500
    model: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    train_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    eval_correct: float = 0.0
    eval_images: int = 0

    def timed_epochs(self) -> list[float]:
        """Seconds of the training epochs after the first (warm-up) when there are more."""
        return self.train_seconds[1:] or self.train_seconds

    def setup(self, model: nn.Module) -> None:
        self.model = prepare_model(model, self.channels_last, self.compile)
        self.optimizer = make_optimizer("adam", self.model, LR)

    def attack(self, steps: int) -> PGD:
        return PGD(EPS, STEP_SIZE, steps, fold_batchnorm=self.fold_batchnorm, cuda_graphs=self.cuda_graphs)

    def train_epoch(self, train: Split, device, steps: int, epoch: int) -> None:
        shuffle = torch_generator(0, "shuffle", epoch)
        attack_generator = torch_generator(0, "attack", epoch, device=device)
        start = time.perf_counter()
        if self.baseline:
            baseline_train_epoch(self.model, self.optimizer, train, device, steps, attack_generator, shuffle)
        else:
            fit(
                self.model, build_regime("pgd", self.attack(steps)), train, lambda m: 0.0, device, epochs=1,
                batch_size=BATCH_SIZE, optimizer=self.optimizer, shuffle_generator=shuffle,
                attack_generator=attack_generator, precision=self.precision,
            )
        if device.type == "cuda":
            torch.cuda.synchronize()  # fit queues kernels without waiting for them
        self.train_seconds.append(time.perf_counter() - start)

    def evaluate_chunk(self, chunk: Split, device, steps: int, index: int, timed: bool) -> None:
        generator = torch_generator(0, "eval", index, device=device)
        start = time.perf_counter()
        if self.baseline:
            robust = baseline_evaluate(self.model, chunk, device, steps, generator)
        else:
            robust = evaluate(
                self.model, chunk, device, self.attack(steps), generator, self.eval_batch_size, self.precision
            ).robust_accuracy
        if timed:
            self.eval_seconds.append(time.perf_counter() - start)
        self.eval_correct += robust * len(chunk)
        self.eval_images += len(chunk)


def variants(names: list[str], eval_batch_size: int) -> list[Variant]:
    catalogue = {
        "baseline": Variant("paper-style baseline (fp32)", baseline=True),
        "fp32": Variant("robustal fp32"),
        "fp32-cl": Variant("robustal fp32 + channels_last", channels_last=True),
        "fp32-cl-fold": Variant("robustal fp32 + channels_last + fold BN", channels_last=True, fold_batchnorm=True),
        "bf16": Variant("robustal bf16", precision="bf16"),
        "bf16-cl-fold": Variant(
            "robustal bf16 + channels_last + fold BN", precision="bf16", channels_last=True, fold_batchnorm=True
        ),
        "fp32-compile": Variant("robustal fp32 + torch.compile", compile=True),
        "fp32-graphs": Variant("robustal fp32 + CUDA graphs", cuda_graphs=True),
        "bf16-cl-fold-graphs": Variant(
            "robustal bf16 + channels_last + fold BN + CUDA graphs",
            precision="bf16", channels_last=True, fold_batchnorm=True, cuda_graphs=True,
        ),
        "bf16-cl-compile": Variant(
            "robustal bf16 + channels_last + torch.compile", precision="bf16", channels_last=True, compile=True
        ),
    }
    chosen = [catalogue[name] for name in names]
    for variant in chosen:
        variant.eval_batch_size = eval_batch_size
    return chosen


def rotate(items: list, offset: int) -> list:
    offset %= len(items)
    return items[offset:] + items[:offset]


def run_benchmark(label, make_model, train, evaluation, device, names, epochs, train_steps, eval_steps, chunk, eval_batch_size=500):
    """Train every variant from the same initial weights, interleaved; then evaluate them."""
    runs = variants(names, eval_batch_size)
    torch.manual_seed(0)
    initial = make_model().state_dict()
    for variant in runs:
        model = make_model().to(device)
        model.load_state_dict(initial)
        variant.setup(model)
    for epoch in range(epochs):
        for variant in rotate(runs, epoch):
            variant.train_epoch(train, device, train_steps, epoch)
            print(f"{label} epoch {epoch} {variant.name}: {variant.train_seconds[-1]:.1f}s", flush=True)
    parts = list(batch_slices(len(evaluation), chunk))
    for index, part in enumerate(parts):
        for variant in rotate(runs, index):  # the first chunk is warm-up when there are more
            variant.evaluate_chunk(evaluation.subset(part), device, eval_steps, index, timed=index > 0 or len(parts) == 1)
        print(f"{label} evaluated {part.stop} images", flush=True)
    return runs


# --------------------------------------------------------------------------- report
def speed_and_ratio(seconds: list[float], base_seconds: list[float], images: int) -> tuple[float, float]:
    """Median images/s, and the median over rounds of the speed-up over the baseline measured in
    the same round (one round = every variant once, back to back: they share the load)."""
    ratios = [b / s for s, b in zip(seconds, base_seconds)]
    return images / float(np.median(seconds)), float(np.median(ratios))


def table(
    label: str, runs: list[Variant], train_images: int, chunk: int, train_steps: int, eval_steps: int, accuracy: bool
) -> list[str]:
    base = runs[0]
    lines = [
        f"### {label}",
        "",
        f"| variant | PGD-{train_steps} training (images/s) | ratio | PGD-{eval_steps} evaluation (images/s) | ratio |"
        + (" robust accuracy % | vs baseline (points) |" if accuracy else ""),
        "|---|---:|---:|---:|---:|" + ("---:|---:|" if accuracy else ""),
    ]
    for run in runs:
        train, train_ratio = speed_and_ratio(run.timed_epochs(), base.timed_epochs(), train_images)
        evaluation, eval_ratio = speed_and_ratio(run.eval_seconds, base.eval_seconds, chunk)
        row = f"| {run.name} | {train:.1f} | {train_ratio:.2f}x | {evaluation:.1f} | {eval_ratio:.2f}x |"
        if accuracy:
            robust = 100 * run.eval_correct / run.eval_images
            row += f" {robust:.2f} | {robust - 100 * base.eval_correct / base.eval_images:+.2f} |"
        lines.append(row)
    return lines + [""]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--variants", default="baseline,fp32,fp32-cl,fp32-cl-fold,bf16,bf16-cl-fold,fp32-compile,bf16-cl-compile"
    )
    parser.add_argument("--train-images", type=int, default=1000, help="MNIST training images per epoch")
    parser.add_argument("--epochs", type=int, default=7, help="training epochs (interleaved across variants)")
    parser.add_argument("--chunk", type=int, default=250, help="evaluation images per interleaved chunk")
    parser.add_argument("--eval-batch-size", type=int, default=500, help="robustal's evaluation batch (LeNet-5)")
    parser.add_argument("--eval-images", type=int, default=2000, help="MNIST test images for PGD-50 evaluation")
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--eval-steps", type=int, default=50)
    parser.add_argument("--resnet-variants", default="baseline,fp32,bf16-cl-fold")
    parser.add_argument("--resnet-images", type=int, default=100, help="0 skips ResNet18")
    parser.add_argument("--resnet-train-steps", type=int, default=40)
    parser.add_argument("--resnet-eval-steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("ROBUSTAL_DATA", SHARED_DATA)))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    load_start = os.getloadavg()[0]
    mnist = load_dataset("mnist", data_root=args.data_root)
    train = mnist.train.subset(slice(0, args.train_images))
    test = mnist.test.subset(slice(0, args.eval_images))  # the test split: test images 5,000 and on
    lines = [
        "# Adversarial training and evaluation speed",
        "",
        "Images per second, robustal variants side by side with the paper-style baseline in one process, "
        "interleaved (see the docstring of `benchmarks/training.py`): one round runs every variant once, back "
        "to back (training: one epoch each; evaluation: one chunk of test images each), the first round is "
        "warm-up (oneDNN primitives, torch.compile) when there are more. Images/s: median over rounds; ratio: "
        "median over rounds of the baseline's time over the variant's time in the same round. Robust accuracy: "
        "PGD-50 on all the test images after the same training (same initial weights, data order and attack seeds).",
        "",
        "**Timings are noisy** on the 2-core CPU machine, shared with other engineers' jobs running at the "
        "same time; interleaving spreads that load over all variants, but treat ratio differences below ~15 % as noise.",
        "",
    ]
    runs = run_benchmark(
        "lenet5", lambda: build_model("lenet5", 1, 10, 32), train, test, device, args.variants.split(","),
        args.epochs, args.train_steps, args.eval_steps, chunk=args.chunk, eval_batch_size=args.eval_batch_size,
    )
    lines += table(
        f"LeNet-5, MNIST 32 x 32: {args.epochs} epochs of {args.train_images} training images, "
        f"{args.eval_images} test images",
        runs, args.train_images, args.chunk, args.train_steps, args.eval_steps, accuracy=True,
    )
    if args.resnet_images:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (args.resnet_images, 3, 32, 32), dtype=torch.uint8, generator=generator)
        cifar_like = Split(images, torch.randint(0, 10, (args.resnet_images,), generator=generator))
        runs = run_benchmark(
            "resnet18", lambda: build_model("resnet18", 3, 10, 32), cifar_like, cifar_like, device,
            args.resnet_variants.split(","), 2, args.resnet_train_steps, args.resnet_eval_steps,
            chunk=max(1, args.resnet_images // 2),
        )
        lines += table(
            f"ResNet18, random CIFAR-shaped 3 x 32 x 32 inputs: 2 epochs of {args.resnet_images} images "
            f"(speed only)", runs, args.resnet_images, max(1, args.resnet_images // 2), args.resnet_train_steps,
            args.resnet_eval_steps, accuracy=False,
        )
    footer = [
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, device {device}, "
        f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}. 1-minute load average "
        f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (on the 2-core machine 2.0 = both cores busy).",
        "",
        "Command: `python benchmarks/training.py " + " ".join(os.sys.argv[1:]) + "`",
        "",
    ]
    text = "\n".join(lines + footer)
    print(text)
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
