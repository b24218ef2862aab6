"""The registry workflow's models: three MLPs for MNIST and a fast tensor-batched training loop.

The data stays as tensors on the device and batches are taken by indexing a permutation: no
per-sample PIL transforms and no DataLoader over single images (what makes the assignment's loop slow).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn


class ShallowNN(nn.Module):
    """784-128-10."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.layers(x)


class MediumDeepNN(nn.Module):
    """784-256-128-10."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.layers(x)


class DeepNNWithDropout(nn.Module):
    """784-512-256-128-10 with dropout 0.2, 0.2, 0.1."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(256, 128), nn.ReLU(), nn.Dropout(0.1),
            nn.Linear(128, 10),
        )

    def forward(self, x):
        return self.layers(x)


@dataclass(frozen=True)
class MnistVersion:
    """One version of the assignment's schedule."""

    number: int
    architecture: type[nn.Module]
    model_type: str
    hidden_sizes: tuple[int, ...]
    dropout_rate: str
    epochs: int
    learning_rate: float
    batch_size: int


MNIST_VERSIONS = (
    MnistVersion(1, ShallowNN, "shallow-nn", (128,), "0.0", 50, 0.001, 64),
    MnistVersion(2, MediumDeepNN, "medium-deep-nn", (256, 128), "0.0", 100, 0.001, 32),
    MnistVersion(3, DeepNNWithDropout, "deep-dropout-nn", (512, 256, 128), "0.2,0.2,0.1", 150, 0.0005, 32),
)
EVAL_EVERY = 5


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one dict of metrics per epoch
    seconds: float = 0.0


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_size_mb(model: nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20


def train_epoch(model, optimizer, loss_fn, x, y, batch_size: int, generator: torch.Generator) -> tuple[float, float]:
    """One pass over (x, y) in shuffled batches; returns (mean loss, accuracy)."""
    model.train()
    order = torch.randperm(len(x), generator=generator, device="cpu").to(x.device)
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for start in range(0, len(x), batch_size):
        index = order[start:start + batch_size]
        # index_select copies whole rows: 13-17 us a batch where x[index] (advanced indexing) takes 44-74 us,
        # a fifth of this small model's step (measured on the 2-core machine, bench/mnist_training.py)
        inputs, targets = x.index_select(0, index), y.index_select(0, index)
        logits = model(inputs)
        loss = loss_fn(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # accumulate on the device: no host sync per batch
        total_loss += loss.detach() * len(index)
        correct += (logits.argmax(1) == targets).sum()
    return total_loss.item() / len(x), correct.item() / len(x)


@torch.no_grad()
def evaluate(model, loss_fn, x, y, batch_size: int = 4096) -> tuple[float, float]:
    """(mean loss, accuracy) on (x, y)."""
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        total_loss += loss_fn(logits, y[start:start + batch_size]).item() * len(logits)
        correct += (logits.argmax(1) == y[start:start + batch_size]).sum().item()
    return total_loss / len(x), correct / len(x)


def make_adam(model: nn.Module, learning_rate: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one kernel for all parameters instead of several per tensor): for
    these small MLPs the optimizer step is a large share of each batch."""
    return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)


def train(model, x_train, y_train, x_test, y_test, epochs: int, learning_rate: float, batch_size: int,
          seed: int, on_epoch: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Adam + cross-entropy; test metrics every ``EVAL_EVERY`` epochs and after the last one."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_adam(model, learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    result = TrainResult()
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        train_loss, train_accuracy = train_epoch(model, optimizer, loss_fn, x_train, y_train, batch_size, generator)
        metrics = {"train_loss": train_loss, "train_accuracy": train_accuracy}
        if epoch % EVAL_EVERY == 0 or epoch == epochs:
            metrics["test_loss"], metrics["test_accuracy"] = evaluate(model, loss_fn, x_test, y_test)
        result.history.append(metrics)
        if on_epoch:
            on_epoch(epoch, metrics)
    result.seconds = time.perf_counter() - started
    return result
