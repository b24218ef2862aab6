"""The data layer: reading image files once (:mod:`.read`), the record cache (:mod:`.cache`), manifests and
digests (:mod:`.folders`, :mod:`.arrow_digest`, :mod:`.coco`), diffs and versions, packs, object stores,
and the source kinds every flow reads through (:mod:`.kinds`). Imports no ``mlflow`` (a test checks)."""
