"""The MLflow surface: where runs go (:mod:`.connection`, :mod:`.runs`), what they hold (:mod:`.artifacts`,
:mod:`.datasets`, :mod:`.dataset_sources`), data stored once per server (:mod:`.snapshots`), models and the
registry (:mod:`.model_registry`), lineage queries (:mod:`.lineage`). Every private MLflow or ``datasets`` name the
project uses is in :mod:`._compat`."""

# First, before any module of this layer: MLflow loads its plugins (among them this project's dataset sources,
# image_lineage.tracking.dataset_sources) while mlflow.data initializes; a module of ours half-imported at
# that moment would fail to register.
import mlflow.data  # noqa: E402, F401
