"""MNIST training speed: our tensor-batched loop vs the assignment's DataLoader loop, same model and batch.

The assignment's loop wraps the digits in a Dataset whose ``__getitem__`` makes a PIL image and applies
``ToTensor()`` + ``Normalize()`` per sample, under a ``DataLoader(batch_size, shuffle=True)``. Ours keeps the
normalized digits as one tensor, takes batches by indexing a permutation (``train_epoch``) and
steps a fused Adam (same hyper-parameters).
Both train ShallowNN (784-128-10, Adam 0.001, batch 64) on the 7,000 training digits of the real MNIST
t10k pool (``../shared/data/mnist/raw``) for the same number of epochs, in this one run.

    python bench/mnist_training.py [--epochs 2] [--rounds 5] [--batch-size 64]

Goal: ratio ours/assignment >= 10 (samples per second, CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from image_lineage.training.digits.classifiers import ShallowNN, make_adam, train_epoch
from image_lineage.training.digits.mnist import MNIST_MEAN, MNIST_STD, load_mnist_pool, normalize

MNIST_RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist" / "raw"


class AssignmentDigits(Dataset):
    """The assignment's dataset: uint8 arrays, a PIL image and two transforms per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.images[index], mode="L")), int(self.labels[index])


def assignment_epoch(model, loader, optimizer, loss_fn) -> None:
    model.train()
    for images, labels in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(images.view(images.size(0), -1)), labels)
        loss.backward()
        optimizer.step()


def timed_samples_per_second(work, samples: int) -> float:
    started = time.perf_counter()
    work()
    return samples / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per loop, taken in turns")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_RAW)
    args = parser.parse_args(argv)
    from sklearn.model_selection import train_test_split

    images, labels, origin = load_mnist_pool(args.mnist_dir)
    x_train, _, y_train, _ = train_test_split(images, labels, test_size=0.3, stratify=labels, random_state=42)
    samples = len(x_train) * args.epochs
    print(f"{origin}: {len(x_train)} training digits, {args.epochs} epochs, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads")

    # each loop gets one untimed warm-up epoch, then --rounds rounds of --epochs timed ones, the two loops taking
    # turns: our loop's epochs last ~0.1 s, so one stall (another process, the VM's neighbours) moves a single
    # timing a lot; the medians over the rounds are what the ratio compares
    torch.manual_seed(0)
    model, loss_fn = ShallowNN(), nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    loader = DataLoader(AssignmentDigits(x_train, y_train), batch_size=args.batch_size, shuffle=True)
    assignment_epoch(model, loader, optimizer, loss_fn)
    torch.manual_seed(0)
    ours_model = ShallowNN()
    ours_optimizer = make_adam(ours_model, 0.001)
    x, y = normalize(x_train), torch.from_numpy(y_train.astype(np.int64))
    generator = torch.Generator().manual_seed(0)
    train_epoch(ours_model, ours_optimizer, loss_fn, x, y, args.batch_size, generator)
    theirs, ours = [], []
    for _ in range(args.rounds):
        theirs.append(timed_samples_per_second(
            lambda: [assignment_epoch(model, loader, optimizer, loss_fn) for _ in range(args.epochs)], samples))
        ours.append(timed_samples_per_second(
            lambda: [train_epoch(ours_model, ours_optimizer, loss_fn, x, y, args.batch_size, generator)
                     for _ in range(args.epochs)], samples))

    print(f"assignment loop (DataLoader, PIL + ToTensor + Normalize per sample): {statistics.median(theirs):9.0f} samples/s "
          f"(rounds: {', '.join(f'{v:.0f}' for v in theirs)})")
    print(f"our loop (tensors, batches by indexing):                          {statistics.median(ours):9.0f} samples/s "
          f"(rounds: {', '.join(f'{v:.0f}' for v in ours)})")
    print(f"ratio ours/assignment = {statistics.median(ours) / statistics.median(theirs):.1f}   (goal >= 10; per round "
          f"{', '.join(f'{o / t:.1f}' for o, t in zip(ours, theirs))})")

if __name__ == "__main__":
    main()
