"""A Hugging Face ``datasets`` pipeline with real image lineage: the content digest MLflow's own leaves out.

    python examples/hf_datasets.py --data ../shared/data/catsdogs

``mlflow.data.from_huggingface`` hashes a pandas view in which images are opaque: two datasets with other
pictures and the same labels get the same digest. ``image_lineage.from_huggingface`` takes the same
arguments and hashes every image's bytes; ``log_dataset`` also runs the leakage check and stores the files
once per tracking server.
"""

import argparse

import datasets
import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression

import image_lineage


def features(batch: dict) -> dict:
    """Each image as a 16x16 grey thumbnail, flattened: enough for a baseline."""
    return {"pixels": [np.asarray(image.convert("L").resize((16, 16)), dtype=np.float32).ravel() / 255
                       for image in batch["image"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a folder of class folders (imagefolder layout)")
    args = parser.parse_args()
    ds = datasets.load_dataset("imagefolder", data_dir=args.data, split="train").shuffle(seed=0)
    parts = ds.train_test_split(test_size=0.25, seed=0)
    mlflow.set_experiment("pets-hf")
    with mlflow.start_run():
        train = image_lineage.from_huggingface(parts["train"], path="imagefolder", data_dir=args.data, name="pets_train")
        test = image_lineage.from_huggingface(parts["test"], path="imagefolder", data_dir=args.data, name="pets_test")
        image_lineage.log_dataset(train, context="training")
        mlflow.log_input(test, context="testing")
        x_train = np.stack(parts["train"].map(features, batched=True)["pixels"])
        x_test = np.stack(parts["test"].map(features, batched=True)["pixels"])
        model = LogisticRegression(max_iter=500).fit(x_train, parts["train"]["label"])
        info = mlflow.sklearn.log_model(model, name="baseline", input_example=x_train[:2])
        accuracy = model.score(x_test, parts["test"]["label"])
        mlflow.log_metric("test_accuracy", accuracy, model_id=info.model_id, dataset=test)
    print(f"train digest {train.digest[:12]}, test digest {test.digest[:12]}: accuracy {accuracy:.2f}")


if __name__ == "__main__":
    main()
