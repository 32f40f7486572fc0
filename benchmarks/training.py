"""Adversarial training and robust evaluation speed: robustal against the paper's own loop.

Measures images per second of (a) PGD adversarial training epochs (PGD-40, batch 100) and
(b) PGD-50 evaluation, for LeNet-5 on MNIST (32 x 32) and ResNet18 on CIFAR-shaped inputs
(random 3 x 32 x 32 images: only the speed is measured there). Every variant runs in the same
process, interleaved (epoch by epoch for training, chunk by chunk for evaluation), so that the
load of the shared machine falls on all of them alike; the report gives ratios to the baseline.

The **baseline** is the paper's path: its code (testing-cs/robustAL, ``main_al.py`` and
``utils.py``) trains with torchattacks 2.14's PGD (``torchattacks/attacks/pgd.py``), written out
here because torchattacks is not installed: a fresh attack object per epoch, the model switched
to eval mode for the attack and back, a uniform random start clamped to [0, 1], the gradient of
the *mean* cross-entropy with respect to the input only (``torch.autograd.grad``), sign steps
and projection; then the loss of the model in train mode on the adversarial batch, Adam, batches
of 100 through a DataLoader with per-batch host transfers. Its evaluation (``evaluate_adv``) runs
PGD-50 in batches of 100 and counts correct predictions with ``.item()`` per batch.

A second, slower reference (``backward``) is the loop this benchmark used before: the same
arithmetic with ``loss.backward()`` in the attack, which also computes parameter gradients.

**robustal** variants use `robustal.training.fit` and `robustal.evaluation.evaluate` in an
`robustal.accel.Execution` with each variant's settings; ``fast`` is what ``--fast`` resolves to
on this machine. Robust accuracy is counted robustal's way for every variant (correct both
clean and attacked; the clean pass of the baseline is not timed).

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

from robustal.accel import Execution, detect_hardware, fast_settings
from robustal.attacks import PGD
from robustal.data import Split, load_dataset
from robustal.evaluation import evaluate
from robustal.models import build_model
from robustal.runtime import batch_slices, select_device
from robustal.seeding import torch_generator
from robustal.training import TrainingPlan, build_regime, fit, make_optimizer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results" / "training.md"
EPS, STEP_SIZE, BATCH_SIZE, LR = 0.3, 0.01, 100, 1e-3


# --------------------------------------------------------------------------- the paper's loop
class TorchattacksPGD:
    """torchattacks 2.14's ``PGD`` (``attack.py`` and ``attacks/pgd.py``), line by line; the
    random start draws from `generator` instead of the global generator, for equal draws."""

    def __init__(self, model: nn.Module, eps: float, alpha: float, steps: int, random_start: bool = True) -> None:
        self.model, self.eps, self.alpha, self.steps, self.random_start = model, eps, alpha, steps, random_start
        self._targeted = -1  # default mode: cost = -1 * loss, step *against* its gradient

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        training_mode = self.model.training
        self.model.eval()
        adv_images = self.forward(images, labels, generator)
        if training_mode:
            self.model.train()
        return adv_images

    def forward(self, images, labels, generator):
        images = images.clone().detach()
        labels = labels.clone().detach()
        loss = nn.CrossEntropyLoss()
        adv_images = images.clone().detach()
        if self.random_start:
            adv_images = adv_images + torch.empty_like(adv_images).uniform_(-self.eps, self.eps, generator=generator)
            adv_images = torch.clamp(adv_images, min=0, max=1).detach()
        for _ in range(self.steps):
            adv_images.requires_grad = True
            outputs = self.model(adv_images)
            cost = self._targeted * loss(outputs, labels)
            grad = torch.autograd.grad(cost, adv_images, retain_graph=False, create_graph=False)[0]
            adv_images = adv_images.detach() - self.alpha * grad.sign()
            delta = torch.clamp(adv_images - images, min=-self.eps, max=self.eps)
            adv_images = torch.clamp(images + delta, min=0, max=1).detach()
        return adv_images


class BackwardPGD(TorchattacksPGD):
    """The slower reference: the same arithmetic through ``loss.backward()``, which computes
    (and accumulates) the parameters' gradients at every step as well."""

    def forward(self, images, labels, generator):
        adv_images = images.clone().detach()
        if self.random_start:
            adv_images = adv_images + torch.empty_like(adv_images).uniform_(-self.eps, self.eps, generator=generator)
            adv_images = torch.clamp(adv_images, min=0, max=1).detach()
        for _ in range(self.steps):
            adv_images.requires_grad_(True)
            F.cross_entropy(self.model(adv_images), labels).backward()
            with torch.no_grad():
                adv_images = adv_images + self.alpha * adv_images.grad.sign()
                adv_images = torch.clamp(images + torch.clamp(adv_images - images, -self.eps, self.eps), 0, 1)
        return adv_images.detach()


def paper_train_epoch(attack_class, model, optimizer, train: Split, device, steps: int, generator, shuffle) -> None:
    """One epoch of the paper's adversarial training (``main_al.py``, ``args.train == "adv"``)."""
    dataset = torch.utils.data.TensorDataset(train.images.float() / 255, train.labels)
    order = torch.randperm(len(dataset), generator=shuffle).tolist()  # robustal's order, for equal results
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, sampler=order)
    criterion = nn.CrossEntropyLoss()
    model.train()
    atk = attack_class(model, EPS, STEP_SIZE, steps)  # a fresh attack object per epoch
    for X, y in loader:
        X, y = X.to(device), y.to(device)
        adv_data = atk(X, y, generator)
        output_adv = model(adv_data)
        loss = criterion(output_adv, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def paper_evaluate(attack_class, model, split: Split, device, steps: int, generator) -> tuple[int, float, float]:
    """The paper's ``evaluate_adv``: PGD in batches of 100, ``.item()`` per batch. Returns the
    count correct both clean and attacked (robustal's rule; the clean pass is not timed) and
    the wall and CPU seconds of the paper's own work."""
    dataset = torch.utils.data.TensorDataset(split.images.float() / 255, split.labels)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=False)
    model.eval()
    atk = attack_class(model, EPS, STEP_SIZE, steps)
    both, seconds, cpu = 0, 0.0, 0.0
    for X, y in loader:
        start, cpu_start = time.perf_counter(), time.process_time()
        X, y = X.to(device), y.to(device)
        adv_data = atk(X, y, generator)
        with torch.no_grad():
            adv_correct = model(adv_data).max(1)[1] == y
            adv_correct.sum().item()  # the paper's pgd_acc += ... .item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        cpu += time.process_time() - cpu_start
        with torch.no_grad():
            both += int(((model(X).max(1)[1] == y) & adv_correct).sum())
    return both, seconds, cpu


# --------------------------------------------------------------------------- variants
PAPER_ATTACKS = {"torchattacks": TorchattacksPGD, "backward": BackwardPGD}


@dataclass
class Variant:
    """One way of training and evaluating: the paper's loop (`paper` names its attack), or
    robustal in an `Execution` with `settings`."""

    name: str
    paper: str | None = None
    settings: dict = field(default_factory=dict)
    eval_batch_size: int = 500
    execution: Execution | None = None
    model: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    train_seconds: list[float] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)
    train_cpu: list[float] = field(default_factory=list)  # process CPU seconds: robust to a busy machine
    eval_cpu: list[float] = field(default_factory=list)
    eval_correct: float = 0.0
    eval_images: int = 0

    def timed_epochs(self, cpu: bool = False) -> list[float]:
        """Seconds (wall, or `cpu` seconds) of the training epochs after the first (warm-up) when there are more."""
        seconds = self.train_cpu if cpu else self.train_seconds
        return seconds[1:] or seconds

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.execution = Execution(device, **self.settings)
        self.model = self.execution.prepare(model)
        self.optimizer = make_optimizer("adam", self.model, LR)

    def train_epoch(self, train: Split, device, steps: int, epoch: int) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        if self.paper:
            shuffle = torch_generator(0, "shuffle", epoch)
            attack_generator = torch_generator(0, "train-attack", epoch, device=device)
            paper_train_epoch(
                PAPER_ATTACKS[self.paper], self.model, self.optimizer, train, device, steps, attack_generator, shuffle
            )
        else:
            plan = TrainingPlan(build_regime("pgd", PGD(EPS, STEP_SIZE, steps)), lambda m: 0.0, epochs=1, batch_size=BATCH_SIZE)
            fit(self.model, plan, train, self.execution, seed=0, round_number=epoch, optimizer=self.optimizer)
        if device.type == "cuda":
            torch.cuda.synchronize()  # fit queues kernels without waiting for them
        self.train_seconds.append(time.perf_counter() - start)
        self.train_cpu.append(time.process_time() - cpu)

    def evaluate_chunk(self, chunk: Split, device, steps: int, index: int, timed: bool) -> None:
        generator = torch_generator(0, "eval", index, device=device)
        start, cpu_start = time.perf_counter(), time.process_time()
        if self.paper:
            correct, seconds, cpu = paper_evaluate(PAPER_ATTACKS[self.paper], self.model, chunk, device, steps, generator)
        else:
            attack = PGD(EPS, STEP_SIZE, steps)
            correct = evaluate(self.model, chunk, self.execution, attack, generator, self.eval_batch_size).robust_accuracy * len(chunk)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        if timed:
            self.eval_seconds.append(seconds)
            self.eval_cpu.append(cpu)
        self.eval_correct += correct
        self.eval_images += len(chunk)


def variants(names: list[str], eval_batch_size: int, device: torch.device) -> list[Variant]:
    fast = fast_settings(detect_hardware(device.type))
    described = ", ".join(f"{k}={v}" for k, v in fast.items() if v != Execution.__dataclass_fields__[k].default)
    catalogue = {
        "torchattacks": Variant("paper's loop: torchattacks 2.14 PGD (baseline)", paper="torchattacks"),
        "backward": Variant("reference: the same with loss.backward() in the attack", paper="backward"),
        "fp32": Variant("robustal fp32"),
        "fp32-cl": Variant("robustal fp32 + channels_last", settings=dict(channels_last=True)),
        "fp32-cl-fold": Variant(
            "robustal fp32 + channels_last + fold BN", settings=dict(channels_last=True, fold_batchnorm=True)
        ),
        "bf16": Variant("robustal bf16", settings=dict(precision="bf16")),
        "bf16-cl-fold": Variant(
            "robustal bf16 + channels_last + fold BN",
            settings=dict(precision="bf16", channels_last=True, fold_batchnorm=True),
        ),
        "fast": Variant(f"robustal --fast ({described})", settings=fast),
        "fp32-compile": Variant("robustal fp32 + torch.compile", settings=dict(compile=True)),
        "fp32-graphs": Variant("robustal fp32 + CUDA graphs", settings=dict(cuda_graphs=True)),
        "bf16-cl-fold-graphs": Variant(
            "robustal bf16 + channels_last + fold BN + CUDA graphs",
            settings=dict(precision="bf16", channels_last=True, fold_batchnorm=True, cuda_graphs=True),
        ),
    }
    chosen = [catalogue[name] for name in names]
    for variant in chosen:
        variant.eval_batch_size = eval_batch_size
        defaults = {name: Execution.__dataclass_fields__[name].default for name in fast}
        if variant is not catalogue["fast"] and {**defaults, **variant.settings} == fast:
            variant.name += " (= --fast here)"
    return chosen


def rotate(items: list, offset: int) -> list:
    offset %= len(items)
    return items[offset:] + items[:offset]


def run_benchmark(label, make_model, train, evaluation, device, names, epochs, train_steps, eval_steps, chunk, eval_batch_size=500):
    """Train every variant from the same initial weights, interleaved; then evaluate them."""
    runs = variants(names, eval_batch_size, device)
    torch.manual_seed(0)
    initial = make_model().state_dict()
    for variant in runs:
        model = make_model()
        model.load_state_dict(initial)
        variant.setup(model, device)
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
        f"| variant | PGD-{train_steps} training (images/s) | ratio | ratio, CPU time | PGD-{eval_steps} evaluation "
        "(images/s) | ratio | ratio, CPU time |" + (" robust accuracy % | vs baseline (points) |" if accuracy else ""),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if accuracy else ""),
    ]
    for run in runs:
        train, train_ratio = speed_and_ratio(run.timed_epochs(), base.timed_epochs(), train_images)
        _, train_cpu_ratio = speed_and_ratio(run.timed_epochs(cpu=True), base.timed_epochs(cpu=True), train_images)
        evaluation, eval_ratio = speed_and_ratio(run.eval_seconds, base.eval_seconds, chunk)
        _, eval_cpu_ratio = speed_and_ratio(run.eval_cpu, base.eval_cpu, chunk)
        row = (
            f"| {run.name} | {train:.1f} | {train_ratio:.2f}x | {train_cpu_ratio:.2f}x | {evaluation:.1f} | "
            f"{eval_ratio:.2f}x | {eval_cpu_ratio:.2f}x |"
        )
        if accuracy:
            robust = 100 * run.eval_correct / run.eval_images
            row += f" {robust:.2f} | {robust - 100 * base.eval_correct / base.eval_images:+.2f} |"
        lines.append(row)
    return lines + [""]


def describe_machine(device: torch.device) -> str:
    """The device with its capabilities, and any environment variable that limits them."""
    limits = [f"{name}={os.environ[name]}" for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "NUMBA_CPU_NAME") if name in os.environ]
    text = f"device {device}, {detect_hardware(device.type).describe()}"
    return text + (f" (limited by {' '.join(limits)}: an emulated CPU of that kind)" if limits else "")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--variants", default="torchattacks,backward,fp32,fp32-cl-fold,bf16-cl-fold",
        help="the first is the baseline of the ratios",
    )
    parser.add_argument("--train-images", type=int, default=1000, help="MNIST training images per epoch")
    parser.add_argument("--epochs", type=int, default=7, help="training epochs (interleaved across variants)")
    parser.add_argument("--chunk", type=int, default=250, help="evaluation images per interleaved chunk")
    parser.add_argument("--eval-batch-size", type=int, default=500, help="robustal's evaluation batch (LeNet-5)")
    parser.add_argument("--eval-images", type=int, default=2000, help="MNIST test images for PGD-50 evaluation")
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--eval-steps", type=int, default=50)
    parser.add_argument("--resnet-variants", default="torchattacks,fp32,fast")
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
        "Images per second, robustal variants side by side with the paper's loop (torchattacks 2.14 PGD, "
        "see the docstring of `benchmarks/training.py`) in one process, interleaved: one round runs every variant "
        "once, back to back (training: one epoch each; evaluation: one chunk of test images each), the first round "
        "is warm-up when there are more. Images/s: median over rounds; ratio: median over rounds of the "
        "baseline's time over the variant's time in the same round. Robust accuracy: PGD-50 on all the test "
        "images after the same training (same initial weights, data order and attack seeds), counted correct "
        "both clean and attacked. *Ratio, CPU time*: the same ratio of process CPU seconds, which a busy shared "
        "machine inflates far less than wall time (with 1 thread; with 2, OpenMP's spinning threads count too).",
        "",
        f"**Hardware: {describe_machine(device)}.**",
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
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {describe_machine(device)}, "
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
