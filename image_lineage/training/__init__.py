"""Training: torchvision's detection loop (:mod:`.detection`) and the registry lab's digit classifiers
(:mod:`.digits`). Imports no ``mlflow``: the flows log what these return."""
