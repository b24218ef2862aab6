"""The model-registry workflow: train three versions, register them, let accuracy assign the aliases.

Two suites: ``wine`` (scikit-learn on ``load_wine``) and ``mnist`` (three PyTorch MLPs). Each version
trains in its own child run of the workflow's run, logs its train/test inputs with a content digest, and
is registered; the registered model gets a description and tags, each version ``model_type``, ``status``
and ``dataset.digest`` tags, and the aliases ``baseline``, ``champion`` and ``staging``. The champion is
then loaded by alias and predicts. Re-running registers three new versions and moves the aliases among them.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import infer_signature

from image_lineage.core.names import TAG_DIGEST, digest_prefix, require_choice
from image_lineage.tracking import model_registry as registry
from image_lineage.tracking.datasets import ArrayDataset, log_inputs
from image_lineage.tracking.model_registry import link_trained_model, log_model_metrics
from image_lineage.tracking.runs import MetricBuffer, start_run
from image_lineage.training.digits import mnist
from image_lineage.training.digits import classifiers

LOGGER = logging.getLogger(__name__)

WINE_MODEL = "wine-quality-classifier"
MNIST_MODEL = "mnist-digit-classifier"
SUITES = ("wine", "mnist", "both")
# MLflow saves scikit-learn models with skops, which loads only the types it is told to trust: the tree
# class of the three wine models, which this workflow builds itself. Every log_model below also passes
# explicit pip_requirements (the flavor's defaults, pinned to the installed versions): MLflow otherwise
# infers them in a subprocess that imports the model, ~8 s per logged model on a 2-core machine.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


@dataclass
class RegistryRequest:
    suite: str = "both"
    mnist_dir: str = "mnist_data"
    mnist_source: str = "idx"
    epochs_scale: float = 1.0
    team: str = "ml-platform"
    seed: int = 42
    run_name: str = "train_registry"
    experiment_name: str | None = None


@dataclass
class SuiteReport:
    model_name: str
    table: pd.DataFrame
    aliases: dict[str, str]
    versions: list[registry.VersionScore]
    predictions: pd.DataFrame


def run_registry_workflow(request: RegistryRequest) -> dict[str, SuiteReport]:
    require_choice("suite", request.suite, SUITES)
    reports = {}
    with start_run(request.experiment_name, request.run_name, job="train_registry"):
        if request.suite in ("wine", "both"):
            reports["wine"] = run_wine_suite(request.team, request.seed)
        if request.suite in ("mnist", "both"):
            data = mnist.load_digits(request.mnist_source, request.mnist_dir, seed=request.seed)
            reports["mnist"] = run_mnist_suite(data, request.epochs_scale, request.team, request.seed)
    return reports


# ---------------------------------------------------------------- shared steps


def log_array_inputs(prefix: str, x_train, y_train, x_test, y_test) -> tuple[str, dict]:
    """Log train and test arrays as dataset inputs with content digests; return the train digest and the
    MLflow datasets ({"train": ..., "test": ...})."""
    digests, datasets, inputs = {}, {}, []
    for part, x, y, context in (("train", x_train, y_train, "training"), ("test", x_test, y_test, "testing")):
        digests[part] = array_digest(x, y)
        labels, counts = np.unique(np.asarray(y), return_counts=True)
        profile = {"num_rows": len(y), "class_counts": {str(k): int(c) for k, c in zip(labels, counts)},
                   "bytes": int(np.asarray(x).nbytes), "digest": digests[part]}
        datasets[part] = ArrayDataset(np.asarray(x), None, targets=np.asarray(y), name=f"{prefix}_{part}",
                                      digest=digest_prefix(digests[part]), profile=profile)
        inputs.append((datasets[part], context, {}))
    log_inputs(mlflow.active_run().info.run_id, inputs)
    return digests["train"], datasets


def array_digest(x, y) -> str:
    """sha256 of a features array and its labels: the data's content identity."""
    digest = hashlib.sha256(np.ascontiguousarray(np.asarray(x)).tobytes())
    digest.update(np.ascontiguousarray(np.asarray(y)).tobytes())
    return digest.hexdigest()


def finish_registry(name: str, description: str, model_tags: dict, scores: list[registry.VersionScore]) -> dict[str, str]:
    """Description, tags, aliases by score, and each version's status tag."""
    registry.describe_model(name, description, model_tags)
    aliases = registry.assign_aliases(name, scores, baseline_version=scores[0].version)
    for score in scores:
        registry.tag_version(name, score.version, {"status": registry.status_of(score.version, aliases)})
    return aliases


def log_table(table: pd.DataFrame, stem: str) -> None:
    """Print the table as Markdown and log it as ``<stem>.md`` and ``<stem>.csv`` in the active run."""
    markdown = table.to_markdown(index=False)
    print(markdown)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / f"{stem}.md").write_text(markdown + "\n")
        table.to_csv(Path(folder) / f"{stem}.csv", index=False)
        mlflow.log_artifacts(folder, "registry")


def print_aliases(name: str, aliases: dict[str, str]) -> None:
    print(f"\n{name}: champion = version {aliases['champion']}; aliases: "
          + ", ".join(f"{alias} -> v{version}" for alias, version in sorted(aliases.items())))


# ---------------------------------------------------------------- wine


def wine_models(seed: int) -> list[tuple[str, object]]:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    return [
        ("DecisionTree", DecisionTreeClassifier(random_state=seed)),
        ("RandomForest", RandomForestClassifier(n_estimators=100, random_state=seed)),
        ("GradientBoosting", GradientBoostingClassifier(n_estimators=100, random_state=seed)),
    ]


def run_wine_suite(team: str, seed: int = 42) -> SuiteReport:
    from sklearn.datasets import load_wine
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    x, y = load_wine(return_X_y=True, as_frame=True)
    # the assignment's split: 20% test, random_state=42, fixed whatever --seed says (the models' seeds follow it)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=42)
    scores, rows = [], []
    for number, (algorithm, model) in enumerate(wine_models(seed), start=1):
        with mlflow.start_run(run_name=f"wine_v{number}_{algorithm}", nested=True):
            digest, datasets = log_array_inputs("wine", x_train, y_train, x_test, y_test)
            model.fit(x_train, y_train)
            predicted = model.predict(x_test)
            accuracy, f1 = accuracy_score(y_test, predicted), f1_score(y_test, predicted, average="macro")
            mlflow.log_params({"algorithm": algorithm, **model.get_params()})
            info = mlflow.sklearn.log_model(model, name=f"wine_{algorithm}", signature=infer_signature(x_train, predicted),
                                            input_example=x_train.head(3), registered_model_name=WINE_MODEL,
                                            skops_trusted_types=SKOPS_TRUSTED_TYPES,
                                            pip_requirements=mlflow.sklearn.get_default_pip_requirements())
            link_trained_model(info.model_id, datasets["train"])
            log_model_metrics(info.model_id, {"accuracy": accuracy, "f1_score": f1}, datasets["test"])
        version = str(info.registered_model_version)
        registry.tag_version(WINE_MODEL, version, {"model_type": algorithm, TAG_DIGEST: digest})
        scores.append(registry.VersionScore(version, accuracy, f1))
        rows.append({"Version": int(version), "Algorithm": algorithm, "Accuracy": round(accuracy, 4), "F1-Score": round(f1, 4)})
    aliases = finish_registry(
        WINE_MODEL,
        "Classifies wines from scikit-learn's load_wine (13 chemical measurements) into 3 cultivars. "
        "Versions: DecisionTree (baseline), RandomForest (100 trees), GradientBoosting (100 stages); "
        "F1 is macro-averaged.",
        {"task": "classification", "dataset": "sklearn-wine", "team": team},
        scores,
    )
    champion = mlflow.sklearn.load_model(f"models:/{WINE_MODEL}@champion")
    predictions = pd.DataFrame({"predicted": champion.predict(x_test.head(10)), "actual": y_test.head(10).to_numpy()})
    table = pd.DataFrame(rows)
    log_table(table, "wine_versions")
    print_aliases(WINE_MODEL, aliases)
    print(f"champion predictions on 10 test wines:\n{predictions.to_string(index=False)}")
    return SuiteReport(WINE_MODEL, table, aliases, scores, predictions)


# ---------------------------------------------------------------- mnist


def version_params(version: classifiers.MnistVersion, epochs: int) -> dict:
    hidden = dict(zip(("hidden_size_1", "hidden_size_2", "hidden_size_3"), version.hidden_sizes))
    return {**{k: hidden.get(k, 0) for k in ("hidden_size_1", "hidden_size_2", "hidden_size_3")},
            "dropout_rate": version.dropout_rate, "learning_rate": version.learning_rate,
            "batch_size": version.batch_size, "num_epochs": epochs, "optimizer": "Adam",
            "loss_function": "CrossEntropyLoss", "architecture": version.architecture.__name__}


def train_mnist_version(version, data: mnist.DigitSplits, epochs: int, seed: int, device: torch.device):
    """Train one version in its own child run; return (model, metrics, registered version)."""
    torch.manual_seed(seed)
    model = version.architecture().to(device)
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device), data.y_test.to(device)
    with mlflow.start_run(run_name=f"mnist_v{version.number}_{version.model_type}", nested=True) as run:
        digest, datasets = log_array_inputs("mnist", data.x_train, data.y_train, data.x_test, data.y_test)
        mlflow.log_params({**version_params(version, epochs), "data_source": data.source,
                           "image_shape": "28x28", "num_classes": 10})
        buffer = MetricBuffer(run.info.run_id)
        result = classifiers.train(model, x_train, y_train, x_test, y_test, epochs, version.learning_rate,
                                   version.batch_size, seed, on_epoch=buffer.add)
        buffer.flush()
        final = result.history[-1]
        summary = {"final_test_accuracy": final["test_accuracy"], "final_test_loss": final["test_loss"],
                   "model_size_mb": classifiers.model_size_mb(model)}
        mlflow.log_metric("model_size_mb", summary["model_size_mb"])
        model = model.cpu().eval()
        example = data.x_test[:5].numpy()
        info = mlflow.pytorch.log_model(model, name=f"mnist_{version.model_type}", input_example=example,
                                        signature=infer_signature(example, model(data.x_test[:5]).detach().numpy()),
                                        registered_model_name=MNIST_MODEL,
                                        pip_requirements=mlflow.pytorch.get_default_pip_requirements())
        link_trained_model(info.model_id, datasets["train"])
        log_model_metrics(info.model_id, {k: summary[k] for k in ("final_test_accuracy", "final_test_loss")}, datasets["test"])
    number = str(info.registered_model_version)
    registry.tag_version(MNIST_MODEL, number, {
        "model_type": version.model_type, "num_parameters": classifiers.count_parameters(model),
        "training_time_seconds": round(result.seconds, 2), TAG_DIGEST: digest,
    })
    return model, {**summary, "training_time_seconds": result.seconds, "num_parameters": classifiers.count_parameters(model)}, number


def macro_f1(model, x, y) -> float:
    from sklearn.metrics import f1_score

    with torch.no_grad():
        return f1_score(y.numpy(), model(x).argmax(1).numpy(), average="macro")


def log_digit_samples(data: mnist.DigitSplits, count: int = 16) -> None:
    """A grid of training digits (denormalized) as ``mnist/samples.png``."""
    import matplotlib.pyplot as plt

    images = (data.x_train[:count] * mnist.MNIST_STD + mnist.MNIST_MEAN).reshape(-1, 28, 28).numpy()
    fig, axes = plt.subplots(2, count // 2, figsize=(count // 2, 2.2))
    for axis, image, label in zip(axes.flat, images, data.y_train[:count]):
        axis.imshow(image, cmap="gray")
        axis.set_title(int(label), fontsize=8)
        axis.axis("off")
    mlflow.log_figure(fig, "mnist/samples.png")
    plt.close(fig)


def run_mnist_suite(data: mnist.DigitSplits, epochs_scale: float = 1.0, team: str = "ml-platform", seed: int = 42) -> SuiteReport:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mlflow.log_params({"mnist_data_source": data.source, "mnist_train_size": len(data.x_train),
                       "mnist_test_size": len(data.x_test)})
    log_digit_samples(data)
    scores, results = [], {}
    for version in classifiers.MNIST_VERSIONS:
        epochs = max(1, round(version.epochs * epochs_scale))
        model, metrics, number = train_mnist_version(version, data, epochs, seed, device)
        scores.append(registry.VersionScore(number, metrics["final_test_accuracy"], macro_f1(model, data.x_test, data.y_test)))
        results[version.number] = {**metrics, "registered_version": number}
    aliases = finish_registry(
        MNIST_MODEL,
        "Handwritten digits 0-9 from 28x28 grayscale images flattened to 784 inputs. Versions: ShallowNN "
        "784-128-10, MediumDeepNN 784-256-128-10, DeepNNWithDropout 784-512-256-128-10 (dropout 0.2/0.2/0.1); "
        "Adam, cross-entropy.",
        {"task": "classification", "dataset": "mnist", "framework": "pytorch", "team": team},
        scores,
    )
    predictions = champion_predictions(data)
    mlflow.log_image(champion_grid(data, predictions), key="mnist_champion_predictions", synchronous=True)
    table = mnist_table(results)
    log_table(table, "mnist_versions")
    print_aliases(MNIST_MODEL, aliases)
    print(f"champion predictions on 20 test digits:\n{predictions.head(20).to_string(index=False)}")
    return SuiteReport(MNIST_MODEL, table, aliases, scores, predictions)


def champion_predictions(data: mnist.DigitSplits) -> pd.DataFrame:
    """Load the champion by alias; predictions with confidence for 20 digits, accuracy on the whole test split."""
    # pt2 models (MLflow's default, no pickle) load as an exported graph, traced in eval mode
    champion = mlflow.pytorch.load_model(f"models:/{MNIST_MODEL}@champion", map_location="cpu")
    with torch.no_grad():
        probabilities = torch.softmax(champion(data.x_test), dim=1)
    predicted = probabilities.argmax(1)
    accuracy = (predicted == data.y_test).float().mean().item()
    mlflow.log_metric("mnist_champion_test_accuracy", accuracy)
    print(f"champion accuracy on the whole test split ({len(data.y_test)} digits): {accuracy:.4f}")
    return pd.DataFrame({"predicted": predicted[:20].numpy(), "actual": data.y_test[:20].numpy(),
                         "confidence": probabilities.max(1).values[:20].numpy().round(4)})


def champion_grid(data: mnist.DigitSplits, predictions: pd.DataFrame, scale: int = 3, columns: int = 10):
    """The digits of ``predictions`` in one picture, each captioned ``predicted (actual)``; a wrong prediction
    gets a red frame and a red caption, so a glance at the run page shows where the champion errs."""
    from PIL import Image, ImageDraw

    side, caption = 28 * scale, 14
    digits = (data.x_test[: len(predictions)] * mnist.MNIST_STD + mnist.MNIST_MEAN).clamp(0, 1).reshape(-1, 28, 28)
    rows = -(-len(predictions) // columns)
    grid = Image.new("RGB", (columns * side, rows * (side + caption)), "white")
    draw = ImageDraw.Draw(grid)
    for position, (digit, row) in enumerate(zip(digits, predictions.itertuples())):
        x, y = position % columns * side, position // columns * (side + caption)
        pixels = Image.fromarray((digit.numpy() * 255).astype("uint8")).resize((side, side), Image.NEAREST)
        grid.paste(pixels.convert("RGB"), (x, y))
        wrong = row.predicted != row.actual
        color = (220, 20, 20) if wrong else (0, 0, 0)
        if wrong:
            draw.rectangle((x, y, x + side - 1, y + side - 1), outline=color, width=3)
        draw.text((x + 4, y + side + 1), f"{row.predicted} ({row.actual})", fill=color)
    return grid


def mnist_table(results: dict[int, dict]) -> pd.DataFrame:
    """``| Metric | Version 1 | Version 2 | Version 3 |``."""
    rows = [
        ("Registered Version", "registered_version", "{}"), ("Accuracy", "final_test_accuracy", "{:.4f}"), ("Loss", "final_test_loss", "{:.4f}"),
        ("Parameters", "num_parameters", "{:,}"), ("Training Time", "training_time_seconds", "{:.1f} s"),
        ("Model Size", "model_size_mb", "{:.2f} MB"),
    ]
    return pd.DataFrame([{"Metric": label, **{f"Version {n}": fmt.format(results[n][key]) for n in sorted(results)}}
                         for label, key, fmt in rows])
