"""One thin command-line module per MLproject entry point: parse flags, call image_lineage."""
