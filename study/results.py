"""Study results as long-format Parquet: `scores` (trial, stage, test set), `curves` (trial, stage,
step) and `properties` (trial, stage, evaluator, property: the evaluate stage's rows, under the
trial and stage of the model evaluated).

Rows are flat dicts `{**trial_meta, **metrics}`. Each table is rewritten whole (temporary file then
rename, so a reader never sees half a file and an interrupted write leaves the previous one), and
deduplicated on its key, so a resumed study never repeats a row. A writer may hold rows back
(`add(..., flush=False)`) and write them with the next `flush`: rewriting the curves table at every
epoch of every trial would cost the driver time quadratic in the study's size.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from trainables.errors import OptistudyError
from trainables.files import write_atomically

SCORE_KEY = ("trial_id", "stage", "test_set")
CURVE_KEY = ("trial_id", "stage", "step")
PROPERTY_KEY = ("trial_id", "stage", "evaluator", "property")
TABLE_KEYS = {"scores": SCORE_KEY, "curves": CURVE_KEY, "properties": PROPERTY_KEY}
_OPEN_STORES: dict[Path, "ResultsStore"] = {}  # by resolved folder: see ResultsStore.open


class StorageError(OptistudyError):
    """A results table cannot be written: the disk is full, or the study folder has gone."""


def write_table_atomically(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows as one Parquet file via a temporary sibling and an atomic rename; a failed write
    leaves the previous file as it was and raises `StorageError` naming the path.

    The table's folder is created if missing, its parent is not: a study folder that vanished
    (its disk unmounted, the folder removed) is an error, not a new folder elsewhere."""
    _write_atomically(path, lambda tmp: pq.write_table(pa.Table.from_pylist(rows), tmp))


def write_study_text(path: Path, text: str) -> None:
    """`write_table_atomically` for a text file of the study (its manifest, its cached references)."""
    _write_atomically(path, lambda tmp: tmp.write_text(text))


def _write_atomically(path: Path, write) -> None:
    try:
        path.parent.mkdir(exist_ok=True)
        write_atomically(path, write)
    except OSError as err:
        raise StorageError(f"cannot write {path}: {err.strerror or err}") from None


def read_rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist() if path.is_file() else []


def _clean(value: Any) -> Any:
    """Parquet-friendly scalars: NaN for missing floats, JSON for nested values."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return value


def _open_store(folder: Path) -> "ResultsStore":
    return _OPEN_STORES.get(Path(folder).resolve()) or ResultsStore.open(folder)


def _identity(folder: Path) -> tuple[int, int] | None:
    """(device, inode) of `folder`, None if it does not exist."""
    try:
        info = os.stat(folder)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


class ResultsStore:
    """The `results/` folder of one study: keyed, deduplicated rows, flushed atomically.

    The study folder holding it must stay the one it was at the start: one removed, or gone with
    its disk, and then created again by whoever writes there next (Ray's trials persisting a
    checkpoint do) would get tables without the rows written before; a write then raises
    `StorageError` instead."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._home = _identity(self.folder.parent)
        self._lock = threading.Lock()
        self._rows = {name: {self._key(name, r): r for r in read_rows(self.path(name))} for name in TABLE_KEYS}
        self._unwritten: set[str] = set()
        self._finished = {(r["trial_id"], r["stage"]) for r in self._rows["scores"].values()}
        self.failed_write: StorageError | None = None  # the write that stopped the study, if one did

    @classmethod
    def open(cls, folder: Path) -> "ResultsStore":
        """A fresh store of `folder` (its rows reread from disk), and this process's store of that
        folder from now on: what an unpickled store becomes (see `__reduce__`)."""
        store = cls(folder)
        _OPEN_STORES[store.folder.resolve()] = store
        return store

    def __reduce__(self):
        """Ray pickles the callbacks holding this store with its experiment state and restores them
        on resume. A restored store is the process's open store of its folder (else a fresh one): a
        resumed stage and the next stage then write to one store, and neither rewrites the table
        without the other's rows."""
        return (_open_store, (self.folder,))

    def path(self, table: str) -> Path:
        return self.folder / f"{table}.parquet"

    @staticmethod
    def _key(table: str, row: dict[str, Any]) -> tuple:
        return tuple(row.get(k) for k in TABLE_KEYS[table])

    def add(self, table: str, rows: Iterable[dict[str, Any]], flush: bool = True) -> None:
        """Insert or replace rows by key, then rewrite the table (with `flush=False`: at the next flush)."""
        with self._lock:
            for row in rows:
                clean = {k: _clean(v) for k, v in row.items()}
                self._rows[table][self._key(table, clean)] = clean
                if table == "scores":
                    self._finished.add((clean["trial_id"], clean["stage"]))
            self._unwritten.add(table)
            if flush:
                self._write(table)

    def flush(self, *tables: str) -> None:
        """Rewrite the given tables (default: all) if they hold rows not yet on disk."""
        with self._lock:
            for table in tables or tuple(TABLE_KEYS):
                if table in self._unwritten:
                    self._write(table)

    def _write(self, table: str) -> None:
        if _identity(self.folder.parent) != self._home:
            self.failed_write = StorageError(f"study folder {self.folder.parent} has vanished (removed, moved, or "
                                             "its disk unmounted) since this study started; its rows are where it went")
            raise self.failed_write
        try:
            write_table_atomically(self._ordered(table), self.path(table))
        except StorageError as error:
            self.failed_write = error  # Tune reports a callback's error as its traceback's text only
            raise
        self._unwritten.discard(table)

    def _ordered(self, table: str) -> list[dict[str, Any]]:
        rows = list(self._rows[table].values())
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        return [{c: row.get(c) for c in columns} for row in rows]

    def rows(self, table: str) -> list[dict[str, Any]]:
        return list(self._rows[table].values())

    def has_final(self, trial_id: str, stage: str) -> bool:
        return (trial_id, stage) in self._finished


def score_rows(meta: dict[str, Any], scores: dict[str, dict[str, Any]], test_sets: list[str], status: str,
               wall_time_s: float, steps: int, error: str | None = None, resumed_from_step: int = 0,
               compile_time_s: float = math.nan, environment: dict[str, Any] | None = None,
               cost: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per test set; a failed trial (diverged, error) gets NaN metrics on every test set, a
    finished one rows for the test sets it scored, with every metric the set has (a path's or scan's
    relative-energy errors and profiles too). `resumed_from_step` > 0 marks a trial whose last
    attempt restarted from a checkpoint (a failed worker or node, a resumed study). The wall time is
    also split into `compile_time_s` (one-time compiling) and `training_time_s` (the rest), and the
    trial's `environment` (host, device, threads, versions) and `cost` (its method's trainable
    parameters, memory and step time: trainables.stages.finetune.run_cost) go on every row."""
    rows = []
    for name in test_sets if status != "ok" else [n for n in test_sets if n in scores]:
        metrics = scores.get(name, {})
        rows.append({**meta, "test_set": name,
                     "energy_rmse_mev_atom": metrics.get("energy_rmse_mev_atom", math.nan),
                     "force_rmse_mev_a": metrics.get("force_rmse_mev_a", math.nan), **metrics,
                     "wall_time_s": wall_time_s, "compile_time_s": compile_time_s,
                     "training_time_s": wall_time_s - compile_time_s, "steps": steps,
                     "resumed_from_step": resumed_from_step, "status": status, "error": error, **(environment or {}), **(cost or {})})
    return rows


CURVE_FIELDS = ("loss", "val_energy_rmse_mev_atom", "val_force_rmse_mev_a", "wall_time_s", "steps",
                "train_time_s", "compile_time_s", "grad_norm", "step_length", "alpha", "fevals", "damped")


def curve_row(meta: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """One curve point: the epoch (first order; fractional for a validation within an epoch, see
    `val_every_steps`) or the L-BFGS iteration as `step`; `steps` counts optimizer steps."""
    step = float(result.get("epoch", result.get("step")))
    row = {**meta, "step": step if step % 1 else int(step)}
    for name in CURVE_FIELDS:
        value = result.get(name)
        row[name] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    return row


def property_rows(meta: dict[str, Any], rows: list[dict[str, Any]], evaluation_trial_id: str) -> list[dict[str, Any]]:
    """The evaluate stage's rows of one model: its trial's columns (`meta`: the trial and stage of the
    model evaluated), the evaluation trial that measured them, and each evaluator row
    (`trainables.properties.ROW_KEYS`)."""
    return [{**meta, "evaluation_trial_id": evaluation_trial_id, **row} for row in rows]
