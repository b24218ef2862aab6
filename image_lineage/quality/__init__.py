"""The leakage check: exact and near-duplicate pairs (:mod:`.pairs`), the report a person reads
(:mod:`.report`), and what leakage does to a run (:mod:`.gate`). Imports no ``mlflow``: the flows log it."""
