"""A labeling project (`LabelProject`): the images, what is asked in which order, the labels.

A project is a folder::

    PROJECT/project.json       settings: the run's RunConfig, classes, image size, versions
    PROJECT/labels.sqlite      the label store (robustal.label.store): items, queue, label log, rounds
    PROJECT/images/images.npy  every image decoded once (uint8, N x C x H x W, memory-mapped)
    PROJECT/rounds/            checkpoint-NN.pt of each training round (written atomically)
    PROJECT/trainer.log        what the background trainer printed

`LabelProject.init` decodes the images once (robustal.data.image_cache: unreadable files are
listed and skipped, exact duplicates kept once), then asks, in this order: a random validation
set (robust model selection needs labeled validation data), a random initial batch, then the
batches the acquisition function ranks after each training round (robustal.label.trainer, a
separate process started by `maybe_start_training`). Every label, skip and undo is one event
of an append-only log, written in one SQLite transaction: once `label` returns, the label
survives a kill -9. Annotators are served different items through leases that expire.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from robustal.config import RunConfig, make_config
from robustal.data.folder import DEFAULT_MODEL, DEFAULT_SIZE, images_in, list_folder
from robustal.data.image_cache import ImageFile, ImageListing, decode_split, image_file, scan_files, shown, unreadable_text
from robustal.data.registry import DatasetInfo, register_dataset_scheme
from robustal.errors import ConfigError, DataError, decoding_errors
from robustal.label.store import STORE_FILE, Store, append_event, last_event_id, now
from robustal.rundir import versions
from robustal.presets import apply_preset
from robustal.seeding import numpy_rng

PROJECT_FILE = "project.json"
IMAGES_FILE = "images/images.npy"
ROUNDS_FOLDER = "rounds"
TRAINER_LOG = "trainer.log"
FORMAT = 1
SCHEME = "label"  # RunConfig.dataset of a project: "label:<project id>"
DEFAULT_VALIDATION = 100
MAX_CLASSES = 1000
MAX_CLASS_NAME = 100
MAX_ANNOTATOR = 100
MAX_LEASE_SECONDS = 24 * 3600.0
MAX_HISTORY = 1000
MAX_OVERFLOW = 100_000
WEB = "web"  # the source of events from the labeling page
# the preset table a project uses: its images are like MNIST (grayscale) or like CIFAR-10 (colour)
PRESET_DATASETS = {1: "mnist", 3: "cifar10"}


@dataclass(frozen=True)
class Item:
    """One image of the project as the labeling page sees it."""

    id: int  # item id (SQLite rowid); images are served by this id only
    role: str  # "validation" | "initial" | "round" (what it was asked for); "pool": never asked
    round: int  # round whose queue asked it (validation/initial: 0)
    rank: int  # rank in that round's queue (0 = asked first); -1 when never asked
    score: float | None  # acquisition score (higher = asked earlier), None for random picks
    label: int | None  # current label (latest label event not undone), None if none
    skipped: bool  # the latest event (not undone) is a skip
    path: str = ""  # the original image file (for people; never used to serve the image)


@dataclass(frozen=True)
class Progress:
    labeled: int  # items with a current label (all roles)
    asked: int  # items put in a queue so far (overflow ranks count once labeled or skipped)
    validation_labeled: int
    validation_total: int
    round: int  # the round being labeled now
    round_labeled: int  # labeled items of the current round's batch
    round_size: int  # size of that batch (round 0: the validation set and the initial batch)
    training: bool  # a background round is running
    rounds_finished: int
    round_done: int = 0  # items of the current batch labeled or skipped
    skipped: int = 0  # items whose latest event is a skip
    finished: bool = False  # the budget is labeled (or the pool is empty): nothing more to ask
    training_error: str | None = None  # why the last training run failed (it restarts on new labels)


@dataclass(frozen=True)
class RoundSummary:
    round: int
    labeled: int  # labeled training items the model was trained on
    clean_accuracy: float  # on the labeled validation items
    robust_accuracy: float  # PGD, counting only points also correct clean
    finished_at: str  # ISO time
    validation_labeled: int = 0  # labeled validation items it was scored on


def _label_dataset_info(name: str, path: Path) -> DatasetInfo:
    """The registry entry of a project's images (``label:<id>``): its defaults are those of image
    folders; the images themselves are read by `LabelProject`, never by `load_dataset`."""

    def loader(data_root: Path):
        raise ConfigError(f"{name} names a labeling project's images; robustal label reads them (not --dataset)")

    return DatasetInfo(
        name=name, loader=loader, default_model=DEFAULT_MODEL, native_size=DEFAULT_SIZE, default_size=DEFAULT_SIZE,
        description="the images of a labeling project (robustal label)",
    )  # fmt: skip


register_dataset_scheme(SCHEME, _label_dataset_info)


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, finished but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# a process that started this long after its trainer row was written is not that trainer: its
# pid was reused after the trainer died (/proc's start time has 1 s and 10 ms resolutions)
PID_REUSE_SLACK_S = 2.0


def process_start_time(pid: int) -> float | None:
    """When process `pid` started, in seconds since the epoch (Linux /proc); None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime, in clock ticks
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def live_trainer(connection):
    """The store's trainer row (pid, run) while its process runs; None when it died, or when its
    pid now belongs to a process that started after the row was written (a reused pid)."""
    row = connection.execute(
        "SELECT t.pid, t.run, r.started_at FROM trainer t LEFT JOIN trainer_runs r ON r.id = t.run"
    ).fetchone()
    if row is None or not process_alive(row["pid"]):
        return None
    started = process_start_time(row["pid"])
    if started is not None and row["started_at"] is not None:
        if started > datetime.fromisoformat(row["started_at"]).timestamp() + PID_REUSE_SLACK_S:
            return None
    return row


def check_annotator(annotator: str) -> str:
    if not isinstance(annotator, str) or not annotator.strip() or len(annotator) > MAX_ANNOTATOR:
        raise ConfigError(f"annotator must be a name of 1..{MAX_ANNOTATOR} characters, got {annotator!r}")
    return annotator


def check_classes(classes: list[str]) -> list[str]:
    """`classes` when they are 2..MAX_CLASSES distinct, non-empty names, else `ConfigError`."""
    names = [str(name).strip() for name in classes]
    if not 2 <= len(names) <= MAX_CLASSES:
        raise ConfigError(f"{len(names)} class(es) {names}; a classifier needs 2..{MAX_CLASSES} classes")
    bad = [name for name in names if not name or len(name) > MAX_CLASS_NAME or not name.isprintable()]
    if bad:
        raise ConfigError(f"class names must be 1..{MAX_CLASS_NAME} printable characters, got {bad[:3]}")
    # names become folder names in exports (imagefolder)
    unsafe = [name for name in names if "/" in name or "\\" in name or name in (".", "..")]
    if unsafe:
        raise ConfigError(f"class names cannot contain / or \\ nor be . or .. (they name export folders), got {unsafe[:3]}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"class(es) {', '.join(repeated)} given twice; name each class once")
    return names


def listed_files(images: Path | None, labeled: Path | None, classes: list[str] | None) -> tuple[list[str], list[ImageFile]]:
    """The classes and the image files of a new project: `labeled`'s class subfolders first (label =
    index in the classes; with `classes` given, every subfolder must be one of them), then the
    unlabeled images under `images` (label -1). Names are absolute paths (unique)."""
    if images is None and labeled is None:
        raise ConfigError("give the images to label: --images DIR (and/or --labeled DIR with one subfolder per class)")
    files: list[ImageFile] = []
    if labeled is not None:
        listing = list_folder(Path(labeled))
        if classes is None:
            classes = list(listing.classes)
        unknown = sorted(set(listing.classes) - set(classes))
        if unknown:
            raise ConfigError(
                f"{labeled}: class folder(s) {', '.join(unknown)} are not among --classes {','.join(classes)}; "
                "add them to --classes or rename the folders"
            )
        index = {name: label for label, name in enumerate(classes)}
        files += [
            image_file(file.path, str(file.path.resolve()), index[listing.classes[file.label]], None) for file in listing.files
        ]
    if classes is None:
        raise ConfigError("give the class names: --classes a,b,c (or --labeled DIR, whose subfolders name them)")
    if images is not None:
        if not Path(images).is_dir():
            raise DataError(f"{images}: no such folder; --images needs a folder of image files (jpg, png, webp, bmp)")
        found = images_in(Path(images))
        if not found:
            raise DataError(f"{images}: no image files (jpg, jpeg, png, webp, bmp) in it or its subfolders")
        files += [image_file(path, str(path.resolve()), -1, None) for path in found]
    return check_classes(list(classes)), files


def project_settings(settings: dict, project_id: str, channels: int) -> RunConfig:
    """The validated run settings of a new project: `settings` (RunConfig fields, and optionally
    ``preset``: the preset of MNIST for grayscale images, of CIFAR-10 for colour ones)."""
    settings = dict(settings)
    if "dataset" in settings:
        raise ConfigError("a labeling project trains on its own images: leave out --dataset (give --images)")
    preset = settings.pop("preset", None)
    settings["dataset"] = f"{SCHEME}:{project_id}"
    if preset is not None:
        settings = apply_preset(preset, PRESET_DATASETS[channels], settings)
    return make_config(**settings)


def check_new_project(path: Path) -> None:
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise ConfigError(
            f"{path} already exists; a new project needs a new folder (robustal label serve {path} opens an existing project)"
        )


def ask_order(unlabeled: np.ndarray, validation: int, initial: int, overflow: int, seed: int) -> dict[str, np.ndarray]:
    """Rows, in asking order, of the random validation set, the initial batch and up to `overflow`
    more random images (served while round 0 trains), seeded from `seed`."""
    if not 1 <= validation or validation + initial > len(unlabeled):
        raise ConfigError(
            f"--validation {validation} and --initial {initial} ask {validation + initial} images but "
            f"{len(unlabeled)} are unlabeled; ask fewer (--validation >= 1) or add images"
        )
    order = {"validation": numpy_rng(seed, "label-validation").choice(unlabeled, size=validation, replace=False)}
    rest = np.setdiff1d(unlabeled, order["validation"])
    beyond = numpy_rng(seed, "label-initial").permutation(rest)
    extra = min(overflow, len(rest) - initial)
    return {**order, "initial": beyond[:initial], "overflow": beyond[initial : initial + extra]}


class LabelProject:
    """A labeling project folder (see the module doc); `init` creates one, `open` opens one.

    Methods are safe to call from several threads and processes at once (one SQLite
    transaction each). `annotator` names one labeling session (a person, or a tab): leases,
    undo and history are per annotator.
    """

    def __init__(self, path: Path, meta: dict, config: RunConfig, store: Store) -> None:
        self.path = path
        self.meta = meta
        self.config = config
        self.classes: list[str] = list(meta["classes"])
        self.store = store
        self._images: np.ndarray | None = None
        self._trainer: subprocess.Popen | None = None

    # creating and opening

    @classmethod
    def open(cls, path: str | os.PathLike) -> "LabelProject":
        """The project at `path`; `ConfigError` naming the path when it is not one."""
        path = Path(path)
        meta_file = path / PROJECT_FILE
        if not meta_file.is_file():
            raise ConfigError(f"{path} is not a labeling project (no {PROJECT_FILE}); create one with robustal label init {path}")
        with decoding_errors(f"{meta_file}: damaged project settings ({{reason}}); restore it from a backup"):
            meta = json.loads(meta_file.read_text())
            if meta.get("format") != FORMAT:
                raise DataError(f"{meta_file}: project format {meta.get('format')!r}, this robustal reads {FORMAT}")
            config = make_config(**meta["settings"])
            check_classes(meta["classes"])
        return cls(path, meta, config, Store(path / STORE_FILE))

    @classmethod
    def init(
        cls,
        path: str | os.PathLike,
        images: Path | None,
        classes: list[str] | None,
        labeled: Path | None,
        settings: dict,
        validation: int = DEFAULT_VALIDATION,
        overflow: int | None = None,
    ) -> "LabelProject":
        """Create the project at `path` (a new or empty folder) and return it.

        `images`: a folder of images to label (searched recursively); `labeled`: a folder with one
        subfolder per class of images already labeled (they train from the first round); `classes`:
        the class names (from `labeled`'s subfolders when None); `settings`: RunConfig fields (no
        ``dataset``) plus optionally ``preset``; `validation`: how many random images are asked
        first as the validation set; `overflow`: how many images beyond each batch are queued, to
        be asked while the next round trains (round 0: random ones; default: ``per_round``).
        Nothing is written at `path` until everything is decoded.
        """
        path = Path(path)
        check_new_project(path)
        classes, files = listed_files(images, labeled, classes)
        scan = scan_files(ImageListing("folder", path, tuple(classes), (), tuple(files)))
        if not scan.kept:
            raise DataError(f"no readable image among {len(files)} file(s): {shown(scan.unreadable, unreadable_text)}")
        project_id = uuid.uuid4().hex[:12]
        channels = 1 if scan.grayscale else 3
        config = project_settings(settings, project_id, channels)
        size = config.image_size or DEFAULT_SIZE
        overflow = config.per_round if overflow is None else overflow
        if isinstance(overflow, bool) or not isinstance(overflow, int) or not 0 <= overflow <= MAX_OVERFLOW:
            raise ConfigError(f"overflow must be an integer in 0..{MAX_OVERFLOW}, got {overflow!r}")
        building = path.parent / f".{path.name}.building-{os.getpid()}-{os.urandom(4).hex()}"
        (building / IMAGES_FILE).parent.mkdir(parents=True)
        try:
            rows = decode_split(scan.kept, size, channels, building / IMAGES_FILE, scan.unreadable)
            labels = np.array([row["label"] for row in rows], dtype=np.int64)
            asked = ask_order(np.flatnonzero(labels < 0), validation, config.initial, overflow, config.seed)
            _write_store(building / STORE_FILE, rows, asked, scan, labeled)
            meta = {
                "format": FORMAT, "id": project_id, "classes": classes, "image_size": size, "channels": channels,
                "settings": config.model_dump(), "preset": settings.get("preset"), "validation": int(validation),
                "overflow": overflow, "images": str(images) if images else None,
                "labeled": str(labeled) if labeled else None, "created": now(), "versions": versions(),
            }  # fmt: skip
            (building / PROJECT_FILE).write_text(json.dumps(meta, indent=2))
            (building / ROUNDS_FOLDER).mkdir()
            if path.is_dir():
                path.rmdir()  # empty (checked above)
            os.replace(building, path)
        finally:
            shutil.rmtree(building, ignore_errors=True)
        return cls.open(path)

    def close(self) -> None:
        self.store.close()

    # what the page asks

    def next_item(self, annotator: str, lease_seconds: float = 300.0) -> Item | None:
        """The next item to label for `annotator`, leased to them for `lease_seconds`; None when
        nothing is to be asked now (training is under way, or everything is labeled).

        An annotator holding an open lease gets that item again (a reloaded page shows the same
        image). Otherwise: the first open item of the validation set, then of every round's
        batch by (round, rank), then of the current round's overflow ranks, leased by nobody else.
        """
        check_annotator(annotator)
        if not 0 < lease_seconds <= MAX_LEASE_SECONDS:
            raise ConfigError(f"lease_seconds must be in (0, {MAX_LEASE_SECONDS:.0f}], got {lease_seconds}")
        with self.store.write() as connection:
            moment = time.time()
            connection.execute("DELETE FROM leases WHERE expires <= ?", (moment,))
            own = connection.execute(
                "SELECT l.item FROM leases l JOIN items i ON i.id = l.item "
                "WHERE l.annotator = ? AND i.label IS NULL AND i.skipped = 0 ORDER BY l.expires DESC LIMIT 1",
                (annotator,),
            ).fetchone()
            found = own["item"] if own else self._first_open(connection)
            if found is None:
                return None
            connection.execute(
                "INSERT OR REPLACE INTO leases (item, annotator, expires) VALUES (?, ?, ?)",
                (found, annotator, moment + lease_seconds),
            )
            return self._item(connection, found)

    def _first_open(self, connection) -> int | None:
        current = _current_round(connection)
        serve_overflow = not _finished(connection, current)
        row = connection.execute(
            "SELECT q.item FROM queue q JOIN items i ON i.id = q.item "
            "WHERE i.label IS NULL AND i.skipped = 0 AND q.item NOT IN (SELECT item FROM leases) "
            "AND q.round = (SELECT MAX(round) FROM queue WHERE item = q.item) "
            "AND (q.overflow = 0 OR (q.round = ? AND ?)) "
            "ORDER BY q.overflow, q.role != 'validation', q.round, q.rank LIMIT 1",
            (current, int(serve_overflow)),
        ).fetchone()
        return row["item"] if row else None

    def item(self, item_id: int) -> Item:
        """Item `item_id`; `ConfigError` for an unknown id."""
        with self.store.snapshot() as connection:
            return self._item(connection, item_id)

    def _item(self, connection, item_id: int) -> Item:
        item_id = self._check_id(item_id)
        row = connection.execute(
            "SELECT i.id, i.path, i.label, i.skipped, q.role, q.round, q.rank, q.score FROM items i "
            "LEFT JOIN queue q ON q.item = i.id AND q.round = (SELECT MAX(round) FROM queue WHERE item = i.id) "
            "WHERE i.id = ?",
            (item_id,),
        ).fetchone()
        if row is None:
            raise ConfigError(f"unknown item id {item_id}")
        return _to_item(row)

    @staticmethod
    def _check_id(item_id: int) -> int:
        if isinstance(item_id, bool) or not isinstance(item_id, (int, np.integer)):
            raise ConfigError(f"item ids are integers, got {item_id!r}")
        return int(item_id)

    def image_png(self, item_id: int) -> bytes:
        """Item `item_id`'s image (as decoded for training) as PNG bytes."""
        row = self._row(item_id)
        pixels = self.images[row]
        image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    def original_image(self, item_id: int) -> bytes | None:
        """The bytes of item `item_id`'s original file (full resolution), or None when the file is
        gone or changed since init (its sha256 differs): then show `image_png`."""
        import hashlib

        item_id = self._check_id(item_id)
        rows = self.store.read("SELECT path, sha256 FROM items WHERE id = ?", (item_id,))
        if not rows:
            raise ConfigError(f"unknown item id {item_id}")
        try:
            data = Path(rows[0]["path"]).read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == rows[0]["sha256"] else None

    @property
    def images(self) -> np.ndarray:
        """Every item's decoded image (uint8, N x C x H x W, memory-mapped; row = items.row)."""
        if self._images is None:
            with decoding_errors(f"{self.path / IMAGES_FILE}: damaged image array ({{reason}}); restore it from a backup"):
                self._images = np.load(self.path / IMAGES_FILE, mmap_mode="r")
        return self._images

    def _row(self, item_id: int) -> int:
        item_id = self._check_id(item_id)
        rows = self.store.read("SELECT row FROM items WHERE id = ?", (item_id,))
        if not rows:
            raise ConfigError(f"unknown item id {item_id}")
        return int(rows[0]["row"])

    # labeling

    def label(self, item_id: int, label: int, annotator: str, source: str = WEB) -> None:
        """Record `label` for item `item_id` (one transaction; labeling a labeled item relabels it)."""
        check_annotator(annotator)
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < len(self.classes):
            raise ConfigError(f"label {label!r} is not a class (0..{len(self.classes) - 1})")
        self._append(item_id, "label", annotator, source, int(label))

    def skip(self, item_id: int, annotator: str, source: str = WEB) -> None:
        """Record that `annotator` skipped item `item_id` (it is not trained on, nor asked again)."""
        check_annotator(annotator)
        self._append(item_id, "skip", annotator, source)

    def _append(self, item_id: int, kind: str, annotator: str, source: str, label: int | None = None) -> None:
        item_id = self._check_id(item_id)
        with self.store.write() as connection:
            if connection.execute("SELECT 1 FROM items WHERE id = ?", (item_id,)).fetchone() is None:
                raise ConfigError(f"unknown item id {item_id}")
            append_event(connection, item_id, kind, annotator, source, label)

    def undo(self, annotator: str, lease_seconds: float = 300.0) -> Item | None:
        """Take back `annotator`'s latest label or skip that is not undone yet; the item (leased to
        them, to show again), or None when there is nothing to undo. Undoing a relabel brings
        back the label before it."""
        check_annotator(annotator)
        with self.store.write() as connection:
            event = connection.execute(
                "SELECT id, item FROM events e WHERE annotator = ? AND kind != 'undo' "
                "AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.id) ORDER BY id DESC LIMIT 1",
                (annotator,),
            ).fetchone()
            if event is None:
                return None
            append_event(connection, event["item"], "undo", annotator, WEB, undoes=event["id"])
            connection.execute(
                "INSERT OR REPLACE INTO leases (item, annotator, expires) VALUES (?, ?, ?)",
                (event["item"], annotator, time.time() + min(lease_seconds, MAX_LEASE_SECONDS)),
            )
            return self._item(connection, event["item"])

    def history(self, annotator: str | None = None, limit: int = 20) -> list[Item]:
        """Items labeled or skipped (by `annotator`, or anyone), most recently first; undone events
        do not count. Each item shows its current label."""
        if annotator is not None:
            check_annotator(annotator)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY:
            raise ConfigError(f"limit must be an integer in 1..{MAX_HISTORY}, got {limit!r}")
        rows = self.store.read(
            "SELECT item, MAX(id) AS last FROM events e WHERE kind != 'undo' "
            "AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes = e.id) AND (? IS NULL OR annotator = ?) "
            "GROUP BY item ORDER BY last DESC LIMIT ?",
            (annotator, annotator, limit),
        )
        with self.store.snapshot() as connection:
            return [self._item(connection, row["item"]) for row in rows]

    # progress and rounds

    def progress(self) -> Progress:
        self._reap()
        with self.store.snapshot() as connection:  # every count from one state
            count = lambda sql, *parameters: int(connection.execute(sql, parameters).fetchone()[0] or 0)  # noqa: E731
            current = _current_round(connection)
            batch = "FROM queue q JOIN items i ON i.id = q.item WHERE q.round = ? AND q.overflow = 0"
            failed = connection.execute(
                "SELECT status, message FROM trainer_runs ORDER BY id DESC LIMIT 1"
            ).fetchone()
            return Progress(
                labeled=count("SELECT COUNT(*) FROM items WHERE label IS NOT NULL"),
                asked=count(
                    "SELECT COUNT(DISTINCT q.item) FROM queue q JOIN items i ON i.id = q.item "
                    "WHERE q.overflow = 0 OR i.event IS NOT NULL"
                ),
                validation_labeled=count("SELECT COUNT(*) FROM items WHERE role = 'validation' AND label IS NOT NULL"),
                validation_total=count("SELECT COUNT(*) FROM items WHERE role = 'validation'"),
                round=current,
                round_labeled=count(f"SELECT COUNT(*) {batch} AND i.label IS NOT NULL", current),
                round_size=count(f"SELECT COUNT(*) {batch}", current),
                training=_running_trainer(connection) is not None,
                rounds_finished=count("SELECT COUNT(*) FROM rounds"),
                round_done=count(f"SELECT COUNT(*) {batch} AND i.event IS NOT NULL", current),
                skipped=count("SELECT COUNT(*) FROM items WHERE skipped = 1"),
                finished=_finished(connection, current),
                training_error=failed["message"] if failed and failed["status"] == "failed" else None,
            )

    def rounds(self) -> list[RoundSummary]:
        """Every finished training round, in order."""
        rows = self.store.read(
            "SELECT round, labeled, clean_accuracy, robust_accuracy, finished_at, validation_labeled FROM rounds ORDER BY round"
        )
        return [RoundSummary(**dict(row)) for row in rows]

    # background training

    def maybe_start_training(self) -> bool:
        """Start the background trainer (``python -m robustal.label.trainer PROJECT``, output in
        ``trainer.log``) when the current round's batch is all labeled or skipped, its round is
        not trained yet and no trainer runs; True when it started one. After a failed run it waits
        for a new label (so a failing round does not restart after every request)."""
        self._reap()
        with self.store.write() as connection:
            if not self._training_due(connection):
                return False
            with (self.path / TRAINER_LOG).open("ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "robustal.label.trainer", str(self.path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            register_trainer(connection, process.pid)
            self._trainer = process
            return True

    def _training_due(self, connection) -> bool:
        return _running_trainer(connection) is None and round_due(connection)

    def _reap(self) -> None:
        """Collect the exit status of a trainer this object started (so it leaves no zombie)."""
        if self._trainer is not None and self._trainer.poll() is not None:
            self._trainer = None

    def left_out(self) -> dict[str, list[dict]]:
        """The files init left out: ``unreadable`` (path, reason) and ``duplicates`` (path, item)."""
        return {
            "unreadable": [dict(row) for row in self.store.read("SELECT path, reason FROM unreadable ORDER BY path")],
            "duplicates": [dict(row) for row in self.store.read("SELECT path, item FROM duplicates ORDER BY path")],
        }

    def checkpoint_path(self, round_number: int) -> Path:
        """Where round `round_number`'s checkpoint is written."""
        return self.path / ROUNDS_FOLDER / f"checkpoint-{round_number:02d}.pt"


def _to_item(row) -> Item:
    return Item(
        id=int(row["id"]),
        role=row["role"] or "pool",
        round=int(row["round"] or 0),
        rank=int(row["rank"]) if row["rank"] is not None else -1,
        score=row["score"],
        label=row["label"],
        skipped=bool(row["skipped"]),
        path=row["path"],
    )


def _current_round(connection) -> int:
    return int(connection.execute("SELECT MAX(round) FROM queue").fetchone()[0] or 0)


def _trained(connection, round_number: int) -> bool:
    return connection.execute("SELECT 1 FROM rounds WHERE round = ?", (round_number,)).fetchone() is not None


def _finished(connection, current: int) -> bool:
    """The current round is trained and the trainer asked nothing more: the budget is labeled."""
    return _trained(connection, current)


def _running_trainer(connection) -> int | None:
    """The pid of the running trainer, None when none runs (see `live_trainer`)."""
    row = live_trainer(connection)
    return None if row is None else int(row["pid"])


def round_due(connection) -> bool:
    """Whether the current round should train now: its batch (round 0: the validation set and the
    initial batch) is all labeled or skipped and it is not trained yet; unless the last training
    run failed and no label changed since (it would fail again)."""
    current = _current_round(connection)
    if _trained(connection, current):
        return False
    open_items = connection.execute(
        "SELECT COUNT(*) FROM queue q JOIN items i ON i.id = q.item WHERE q.round = ? AND q.overflow = 0 AND i.event IS NULL",
        (current,),
    ).fetchone()[0]
    if open_items:
        return False
    last = connection.execute("SELECT status, last_event FROM trainer_runs ORDER BY id DESC LIMIT 1").fetchone()
    return not (last is not None and last["status"] == "failed" and last["last_event"] == last_event_id(connection))


def register_trainer(connection, pid: int) -> int:
    """Record trainer `pid` as the running one (inside a write transaction); its run id."""
    cursor = connection.execute(
        "INSERT INTO trainer_runs (pid, round, last_event, started_at, status) VALUES (?, ?, ?, ?, 'running')",
        (pid, _current_round(connection), last_event_id(connection), now()),
    )
    connection.execute("INSERT OR REPLACE INTO trainer (id, pid, run) VALUES (1, ?, ?)", (pid, cursor.lastrowid))
    return int(cursor.lastrowid)


def _write_store(path: Path, rows: list[dict], asked: dict[str, np.ndarray], scan, labeled: Path | None) -> None:
    """The new project's store, in one transaction: items, left-out files, the round-0 queue
    (validation set, initial batch, then random overflow ranks) and the labels of `labeled`'s images."""
    store = Store(path, create=True)
    validation_rows = set(asked["validation"].tolist())
    item_of = {row["path"]: number + 1 for number, row in enumerate(rows)}
    try:
        with store.write() as connection:
            connection.executemany(
                "INSERT INTO items (id, row, path, sha256, role) VALUES (?, ?, ?, ?, ?)",
                [
                    (number + 1, number, row["path"], row["sha256"], "validation" if number in validation_rows else "pool")
                    for number, row in enumerate(rows)
                ],
            )
            queue = [(row, role, 0) for role in ("validation", "initial") for row in asked[role]]
            queue += [(row, "initial", 1) for row in asked["overflow"]]
            connection.executemany(
                "INSERT INTO queue (round, rank, item, role, score, acquisition, model_version, overflow) "
                "VALUES (0, ?, ?, ?, NULL, 'random', NULL, ?)",
                [(rank, int(row) + 1, role, overflow) for rank, (row, role, overflow) in enumerate(queue)],
            )
            unreadable = list(scan.unreadable)
            for entry in scan.duplicates:
                if entry["duplicate_of"] in item_of:
                    connection.execute(
                        "INSERT INTO duplicates VALUES (?, ?, ?)", (entry["path"], entry["sha256"], item_of[entry["duplicate_of"]])
                    )
                else:
                    unreadable.append({"path": entry["path"], "reason": f"a copy of the unreadable {entry['duplicate_of']}"})
            connection.executemany("INSERT OR REPLACE INTO unreadable VALUES (?, ?)", [(e["path"], e["reason"]) for e in unreadable])
            for number, row in enumerate(rows):
                if row["label"] >= 0:
                    append_event(connection, number + 1, "label", "init", f"labeled folder {labeled}", row["label"])
    finally:
        store.close()
