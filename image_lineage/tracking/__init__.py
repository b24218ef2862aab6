"""The MLflow surface: where runs go (:mod:`.connection`, :mod:`.runs`), what they hold (:mod:`.artifacts`,
:mod:`.datasets`, :mod:`.dataset_sources`), data stored once per server (:mod:`.snapshots`), models and the
registry (:mod:`.model_registry`), lineage queries (:mod:`.lineage`). Every private MLflow or ``datasets`` name the
project uses is in :mod:`._compat`."""
