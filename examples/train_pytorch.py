"""A plain PyTorch training script on a cat/dog folder (torchvision ImageFolder), with its lineage in MLflow.

    python examples/train_pytorch.py --data ../shared/data/catsdogs --epochs 2

Three lines are about lineage (marked "lineage"): the folder as an MLflow dataset with its content digest,
logged as the run's training input, and the model's metrics logged against it, which links the model to
the data the MLflow 3 way (the Models tab, ``mlflow.search_logged_models(datasets=...)``).
"""

import argparse

import mlflow
import torch
from torch import nn
from torchvision import datasets, transforms

import image_lineage


def make_model(classes: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(32, classes))


def train_epoch(model, loader, optimizer) -> tuple[float, float]:
    model.train()
    total, correct, loss_sum = 0, 0, 0.0
    for images, labels in loader:
        logits = model(images)
        loss = nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        loss_sum += loss.item() * len(labels)
    return loss_sum / total, correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a folder of class folders (cat/, dog/)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--register-as", default="pets-classifier")
    args = parser.parse_args()
    torch.manual_seed(0)
    folder = datasets.ImageFolder(args.data, transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor()]))
    loader = torch.utils.data.DataLoader(folder, batch_size=16, shuffle=True)
    model = make_model(len(folder.classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mlflow.set_experiment("pets")
    with mlflow.start_run():
        pets = image_lineage.from_image_folder(args.data)  # lineage: the folder's content digest
        mlflow.log_input(pets, context="training")  # lineage: the run's training dataset
        for epoch in range(1, args.epochs + 1):
            loss, accuracy = train_epoch(model, loader, optimizer)
            mlflow.log_metrics({"train_loss": loss, "train_accuracy": accuracy}, step=epoch)
        info = mlflow.pytorch.log_model(model, name="model", registered_model_name=args.register_as,
                                        input_example=next(iter(loader))[0][:2].numpy(), pip_requirements=["torch", "torchvision"])
        mlflow.log_metrics({"train_accuracy": accuracy}, model_id=info.model_id, dataset=pets)  # lineage: model -> data
    print(f"trained on {pets.name} (digest {pets.digest[:12]}): {args.register_as} v{info.registered_model_version}")


if __name__ == "__main__":
    main()
