"""COCO detection data: the folder layout (:mod:`.layout`), the instances file's checks (:mod:`.validate`),
a checked split with its digest (:mod:`.index`) and its Hugging Face form (:mod:`.hf_form`)."""
