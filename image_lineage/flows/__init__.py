"""One flow per entry point, each composing the layers below along the one ingestion path (:mod:`.ingest`):
a folder version, the Hugging Face form, the leakage check, the COCO fine-tune, the registry lab, compare,
and the whole workflow."""
