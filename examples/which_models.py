"""Which registered model versions were trained on this folder? The lineage question, answered from Python.

    python examples/which_models.py ../shared/data/catsdogs

The folder's content digest is computed again (unchanged files are not read: the record cache), then every
experiment you can read is searched for runs that logged it, and for the model versions that came from them.
"""

import sys

import image_lineage


def main() -> None:
    folder = sys.argv[1]
    digest = image_lineage.from_image_folder(folder).digest
    runs = image_lineage.runs_using(digest)
    print(f"{folder}: digest {digest[:12]}, logged by {len(runs)} run(s)")
    models = image_lineage.models_trained_on(digest)
    print(models.to_string(index=False) if len(models) else "no registered model version was trained on it")
    for row in models.itertuples():
        print(f"\n{row.Model} v{row.Version} used:\n{image_lineage.datasets_of(row.Model, row.Version).to_string(index=False)}")


if __name__ == "__main__":
    main()
