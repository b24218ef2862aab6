"""Data builders and a request counter shared by the benchmarks."""

from __future__ import annotations

import collections
import contextlib
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "catsdogs"


def build_folder(photos: Path, version_dir: Path, count: int, first: int = 0) -> int:
    """Write ``count`` re-encoded JPEGs split over the photo classes, stamped ``first`` to ``first + count - 1``
    (the stamp is 16 bits: folders whose stamps do not overlap below 65,536 share no file); return the total bytes."""
    sources = [(label.name, path) for label in sorted(photos.iterdir()) if label.is_dir() for path in sorted(label.glob("*.jpg"))]

    decoded = {}
    for _, source in sources:  # decode each photo once; copies are stamped and re-encoded below
        with Image.open(source) as image:
            decoded[source] = image.convert("RGB")

    def write(index: int) -> int:
        label, source = sources[index % len(sources)]
        image = decoded[source].copy()
        # a unique stamp in the corner makes every copy a different file with a different hash
        for bit in range(16):
            image.putpixel((bit, 0), (255, 255, 255) if index >> bit & 1 else (0, 0, 0))
        target = version_dir / label / f"{label}_{index:05d}.jpg"
        image.save(target, quality=90)
        return target.stat().st_size

    for label in {label for label, _ in sources}:
        (version_dir / label).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(4) as pool:
        return sum(pool.map(write, range(first, first + count)))


SHARED_DATA = SHARED_PHOTOS.parent
# Pairs of different files in ../shared/data that a person looked at and found to be the same picture (a
# colour photo and its grey copy, one also re-cropped): the leakage check rightly pairs them.
KNOWN_SAME_PICTURES = (frozenset({"dog/dog2484.jpg", "dog/dog2505.jpg"}), frozenset({"dog/dog2458.jpg", "dog/dog2469.jpg"}))
TRANSFORMS = ("resize_50", "jpeg_q40", "crop_5pct", "bright_20pct", "resize_q40", "crop_bright_q40", "exact_copy",
              "relabelled_copy")
# flipped and turned copies, each with the name the pair report gives it (see image_lineage.data.perceptual.TURNS)
TURN_TRANSFORMS = {"flip": ("flipped", Image.Transpose.FLIP_LEFT_RIGHT),
                   "rotate_90": ("rotated 90", Image.Transpose.ROTATE_270),  # PIL turns counter-clockwise
                   "rotate_180": ("rotated 180", Image.Transpose.ROTATE_180),
                   "rotate_270": ("rotated 270", Image.Transpose.ROTATE_90)}
# copies whose frame moved, each with the start of the name the pair report gives it: turned by up to 10
# degrees, up to a quarter cut from one side or a corner, pasted as half to 4/5 of a larger picture, one tile of
# a 2x2 mosaic of photos (the size of its source). The amounts vary per photo (see moved()).
MOVED_TRANSFORMS = {"rotate_small": "rotated", "cut_side": "cropped", "cut_corner": "cropped", "pasted": "contained",
                    "mosaic_tile": "contained"}


def real_photos(shared_data: Path = SHARED_DATA) -> list[tuple[str, str, Path]]:
    """(origin name, label, path) of every real photo: cats and dogs, and COCO pictures labelled 'scene'."""
    photos = [(f"{p.parent.name}/{p.name}", p.parent.name, p) for p in sorted((shared_data / "catsdogs").glob("*/*.jpg"))]
    photos += [(f"coco/{p.name}", "scene", p) for p in sorted((shared_data / "coco_tiny").glob("*2017/*.jpg"))]
    return photos


def transformed(source: Path, transform: str, others: tuple[Path, ...] = ()) -> bytes:
    """The bytes of a changed copy of ``source``: what a careless split produces (``others``: the three
    other photos of a mosaic)."""
    import io

    from PIL import ImageEnhance

    with Image.open(source) as opened:
        image = opened.convert("RGB")
    width, height = image.size
    border = (round(width * 0.05), round(height * 0.05), width - round(width * 0.05), height - round(height * 0.05))
    quality = 90
    if transform in ("resize_50", "resize_q40"):
        image = image.resize((width // 2, height // 2), Image.Resampling.BILINEAR)
    if transform in ("crop_5pct", "crop_bright_q40"):
        image = image.crop(border)
    if transform in ("bright_20pct", "crop_bright_q40"):
        image = ImageEnhance.Brightness(image).enhance(1.2)
    if transform in ("jpeg_q40", "resize_q40", "crop_bright_q40"):
        quality = 40
    if transform in TURN_TRANSFORMS:
        image = image.transpose(TURN_TRANSFORMS[transform][1])
    if transform in MOVED_TRANSFORMS:
        image = moved(image, transform, source.name, others)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def moved(image: Image.Image, transform: str, name: str, others: tuple[Path, ...]) -> Image.Image:
    """``image`` turned, cut, pasted or tiled (MOVED_TRANSFORMS); how much, and where, follows from ``name``."""
    import random

    choice = random.Random(name)
    width, height = image.size
    if transform == "rotate_small":  # PIL turns counter-clockwise; the frame stays, its corners go black
        return image.rotate(choice.choice([-10, -8, -6, -4, 4, 6, 8, 10]), resample=Image.Resampling.BILINEAR)
    if transform == "cut_side":
        cut = choice.uniform(0.1, 0.25)
        side = choice.choice(["left", "top", "right", "bottom"])
        box = {"left": (round(width * cut), 0, width, height), "top": (0, round(height * cut), width, height),
               "right": (0, 0, round(width * (1 - cut)), height), "bottom": (0, 0, width, round(height * (1 - cut)))}
        return image.crop(box[side])
    if transform == "cut_corner":
        keep = choice.uniform(0.75, 0.9) ** 0.5  # of each side: 75-90 % of the area
        left, top = choice.choice([0, 1]) * round(width * (1 - keep)), choice.choice([0, 1]) * round(height * (1 - keep))
        return image.crop((left, top, left + round(width * keep), top + round(height * keep)))
    if transform == "pasted":
        grow = (1 / choice.uniform(0.5, 0.8)) ** 0.5
        canvas = Image.new("RGB", (round(width * grow), round(height * grow)), tuple(choice.randrange(256) for _ in range(3)))
        canvas.paste(image, (choice.randrange(canvas.width - width + 1), choice.randrange(canvas.height - height + 1)))
        return canvas
    tiles = [image]
    for other in others:
        with Image.open(other) as opened:
            tiles.append(opened.convert("RGB"))
    choice.shuffle(tiles)
    mosaic = Image.new("RGB", (width - width % 2, height - height % 2))
    for number, tile in enumerate(tiles):
        mosaic.paste(tile.resize((width // 2, height // 2)), (number % 2 * (width // 2), number // 2 * (height // 2)))
    return mosaic


def build_leaky_splits(root: Path, copies_per_transform: int = 8, seed: int = 0,
                       transforms: tuple[str, ...] = TRANSFORMS) -> list[tuple[str, str, str]]:
    """Every real photo in ``root/train/<label>/``; in ``root/val/<label>/``, for some of them, a copy made
    by each of TRANSFORMS (the relabelled copy goes under another label). Returns the planted pairs as
    (train path, val path, transform), paths relative to ``root``."""
    import random
    import shutil

    photos = real_photos()
    labels = sorted({label for _, label, _ in photos})
    for _, label, path in photos:
        (root / "train" / label).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, root / "train" / label / path.name)
    picks = random.Random(seed).sample(photos, copies_per_transform * len(transforms))
    planted = []
    for number, (_, label, path) in enumerate(picks):
        transform = transforms[number % len(transforms)]
        target_label = labels[(labels.index(label) + 1) % len(labels)] if transform == "relabelled_copy" else label
        target = root / "val" / target_label / f"{transform}_{path.stem}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        others = ()
        if transform == "mosaic_tile":  # the file's name says every photo in it (see origins())
            others = tuple(p for _, _, p in random.Random(path.name).sample(photos, 4) if p != path)[:3]
            target = target.with_name(f"{transform}_{'+'.join([path.stem, *(p.stem for p in others)])}.jpg")
        if transform in ("exact_copy", "relabelled_copy"):
            shutil.copyfile(path, target)
        else:
            target.write_bytes(transformed(path, transform, others))
        planted.append((f"train/{label}/{path.name}", target.relative_to(root).as_posix(), transform))
    return planted


def origins(path: str) -> set[str]:
    """The real photos a file of the leaky tree was made from (the photos' file names are unique; a mosaic
    names all of its photos, joined by "+")."""
    name = path.rsplit("/", 1)[-1]
    for transform in (*TRANSFORMS, *TURN_TRANSFORMS, *MOVED_TRANSFORMS):
        name = name.removeprefix(f"{transform}_")
    return {f"{stem}.jpg" for stem in name.removesuffix(".jpg").split("+")}


def same_picture(a: str, b: str) -> bool:
    """Whether two files of the leaky tree show one picture: copies of one photo (or a mosaic holding it), or
    a known same-picture pair."""
    first, second = origins(a), origins(b)
    known = [{p.rsplit("/", 1)[-1] for p in group} for group in KNOWN_SAME_PICTURES]
    return bool(first & second) or any(x != y and {x, y} in known for x in first for y in second)


class RequestCounter:
    """Counts the HTTP requests this process sends (MLflow's REST calls and artifact uploads go through
    ``requests``), per phase, with the time spent waiting on each kind: ``with counter.phase("re-log"): ...``
    then ``counter.report()``."""

    def __init__(self):
        import requests

        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.seconds: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.current: str | None = None
        original = requests.Session.send

        def send(session, request, **kwargs):
            phase = self.current
            started = time.perf_counter()
            try:
                return original(session, request, **kwargs)
            finally:
                if phase is not None:
                    path = request.path_url.split("?")[0]
                    # one line per REST method; artifact transfers grouped (thousands of distinct paths)
                    key = f"{request.method} {'/api/2.0/mlflow-artifacts/artifacts/...' if 'mlflow-artifacts' in path else path}"
                    self.counts[phase][key] += 1
                    self.seconds[phase][key] += time.perf_counter() - started

        requests.Session.send = send

    @contextlib.contextmanager
    def phase(self, name: str):
        self.current = name
        try:
            yield
        finally:
            self.current = None

    def report(self) -> str:
        lines = []
        for name, counts in self.counts.items():
            lines.append(f"requests in {name}: {sum(counts.values())}")
            lines.extend(f"    {count:6d}  {key}  ({1000 * self.seconds[name][key] / count:.0f} ms each)"
                         for key, count in counts.most_common())
        return "\n".join(lines)


def wait_until_idle(pid: int, busy_below: float = 0.05, timeout_s: float = 90.0) -> float:
    """Wait until the process ``pid`` and its children use less than ``busy_below`` of a CPU over a second;
    return the seconds waited. A fresh ``mlflow server`` keeps both cores of a small machine busy for ~10 s
    after it answers (its job runner starts its workers): timings taken then measure that, not us."""
    import psutil

    started = time.monotonic()
    root = psutil.Process(pid)

    def cpu_seconds() -> float:
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    while time.monotonic() - started < timeout_s:
        before = cpu_seconds()
        time.sleep(1.0)
        if cpu_seconds() - before < busy_below:
            break
    return time.monotonic() - started


def timed(label: str, work):
    """Run ``work()``, print the label and its seconds in aligned columns; return (its result, the seconds)."""
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    print(f"{label:<58} {seconds:8.2f} s", flush=True)
    return result, seconds


DVC_VENV = Path.home() / ".cache" / "image_lineage" / "dvc-venv"  # dvc from PyPI, in a venv of its own


def ensure_dvc(venv: Path) -> Path:
    dvc = venv / "bin" / "dvc"
    if not dvc.exists():
        print(f"installing dvc into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "dvc"], check=True)
    return dvc
