"""The Optuna study as the system of record: one trial per evaluated genome, written by the driver."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nasbench.errors import NasbenchError, StorageError
from nasbench.objectives import Evaluation, Objectives

if TYPE_CHECKING:
    from nasbench.space import Genome, Space

__all__ = ["DEFAULT_STORAGE", "StudyRecorder", "TrialRecord", "open_storage", "open_study", "redact"]

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///nasbench.db"
_META = "nasbench"


def open_storage(url: str, create: bool = True) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL: ``sqlite:///FILE``, ``postgresql://...``, ``journal:FILE``.

    With ``create=False`` (reading commands) a missing SQLite or journal file is an error
    instead of being created empty.

    Raises:
        StorageError: unknown scheme, missing folder, or unreachable database (fails in seconds).
    """
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            path = Path(url[len("journal:"):].removeprefix("//"))
            if not create and not path.is_file():
                raise StorageError(f"no journal file at {path}; run 'nasbench search' first or fix --storage")
            if not path.parent.is_dir():
                raise StorageError(f"folder of journal file {path} does not exist; create it or pick another path")
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///"):])
            if not create and not path.is_file():
                raise StorageError(f"no study database at {path}; run 'nasbench search' first or fix --storage")
            if path.is_dir() or not path.parent.is_dir():
                raise StorageError(f"cannot create SQLite file {path}; its folder must exist and it must not be a folder")
            return optuna.storages.RDBStorage(url)
        if url.startswith(("postgresql", "mysql")):
            return _server_storage(_with_driver(url))
    except StorageError:
        raise
    except Exception as exc:  # sqlalchemy/driver errors: report the URL and the reason in one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open storage {redact(url)}: {reason}") from None
    raise StorageError(f"unsupported storage URL {redact(url)!r}; use sqlite:///FILE.db, postgresql://USER@HOST/DB or journal:FILE")


def open_study(url: str, name: str) -> optuna.Study:
    """An existing study (for export, trials, dashboard)."""
    storage = open_storage(url, create=False)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise StorageError(f"no study {name!r} in {redact(url)}; studies there: {', '.join(names) or 'none'}") from None


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial as the runner sees it."""

    number: int
    genome: Genome
    evaluation: Evaluation


class StudyRecorder:
    """Creates or resumes the study of a search and records each evaluated genome as one trial.

    The study's user attribute ``nasbench`` holds the search settings; resuming with other
    settings (space, objectives, strategy, dataset, training) is refused, so one study
    never mixes incomparable trials.

    Trials carry: params = genome decisions (with their distributions), values = objectives,
    user attributes = ``genome`` (canonical JSON), ``genome_hash``, ``strategy``, ``seed``,
    every metric, and ``failure`` for failed trials.
    """

    def __init__(self, storage: str, study_name: str, space: Space, objectives: Objectives,
                 settings: dict[str, Any], legacy: dict[str, dict[str, Any]] | None = None) -> None:
        self.storage_url = storage
        #: Per settings section, {key: value it ran with before the key existed}: a stored study
        #: without the key matches a request for that value (so old studies still resume).
        self.legacy = legacy or {}
        self.space = space
        self.objectives = objectives
        # Through JSON once, so what is compared on resume is what the storage gives back (tuples -> lists).
        self.settings = json.loads(json.dumps({"space": space.name, "space_hash": space.hash,
                                               "objectives": list(objectives.names), **settings}))
        self.study = self._create_or_resume(open_storage(storage), study_name)

    def _create_or_resume(self, storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
        try:
            study = optuna.create_study(storage=storage, study_name=name, directions=self.objectives.directions,
                                        load_if_exists=True)
        except Exception as exc:
            raise StorageError(f"cannot create study {name!r} in {redact(self.storage_url)}: {exc}") from None
        stored = study.user_attrs.get(_META)
        if stored is None and study.trials:
            raise StorageError(f"study {name!r} already has trials not made by nasbench; pass --study NEW_NAME")
        have = [d.name.lower() for d in study.directions]
        if have != self.objectives.directions:
            raise StorageError(f"study {name!r} optimizes {have}, not {self.objectives.directions} "
                               f"({self.objectives}); pass --study NEW_NAME")
        if stored is None:
            study.set_user_attr(_META, self.settings)
            return study
        asked = json.loads(json.dumps(self.settings))
        for section, before in self.legacy.items():
            have, want = stored.get(section), asked.get(section)
            if isinstance(have, dict) and isinstance(want, dict):
                for key, value in before.items():
                    if key not in have and want.get(key) == value:
                        del want[key]
        diffs = [f"{k}: stored {stored.get(k)!r}, asked {v!r}" for k, v in asked.items()
                 if k != "space_source" and stored.get(k) != v]
        if diffs:
            raise StorageError(f"study {name!r} was made with other settings ({'; '.join(diffs[:2])}); "
                               "repeat the original flags or pass --study NEW_NAME")
        return study

    @property
    def name(self) -> str:
        """Study name."""
        return self.study.study_name

    def history(self) -> list[TrialRecord]:
        """Finished trials (complete or failed during evaluation), in trial order."""
        return self.records((TrialState.COMPLETE, TrialState.FAIL), lambda t, metrics: Evaluation(
            tuple(t.values) if t.state == TrialState.COMPLETE else None, metrics, t.user_attrs.get("failure")))

    def records(self, states: tuple[TrialState, ...],
                evaluation: Callable[[FrozenTrial, dict[str, Any]], Evaluation]) -> list[TrialRecord]:
        """Stored trials in ``states`` whose genome still fits the space, with ``evaluation(trial, metrics)``."""
        out = []
        for t in self.study.get_trials(deepcopy=False, states=states):
            if "genome" not in t.user_attrs:
                continue
            try:
                genome = self.space.load_genome(t.user_attrs["genome"])
            except NasbenchError as exc:
                logger.warning("trial %d: stored genome no longer fits the space (%s); ignored", t.number, exc)
                continue
            metrics = {k: v for k, v in t.user_attrs.items() if k not in ("genome", "failure")}
            out.append(TrialRecord(t.number, genome, evaluation(t, metrics)))
        return out

    def record(self, genome: Genome, evaluation: Evaluation, *, strategy: str,
               started: dt.datetime, extra: dict[str, Any] | None = None) -> int:
        """Write one finished trial; return its number."""
        attrs: dict[str, Any] = {k: _json_value(v) for k, v in evaluation.metrics.items()}
        attrs.update({"genome": genome.to_json(), "genome_hash": genome.hash, "strategy": strategy,
                      "driver": f"{socket.gethostname()}:{os.getpid()}", **(extra or {})})
        ok = evaluation.ok and all(math.isfinite(v) for v in evaluation.values or ())
        if not ok:
            attrs["failure"] = evaluation.failure or "non-finite objective value"
        trial = FrozenTrial(
            number=-1, trial_id=-1, state=TrialState.COMPLETE if ok else TrialState.FAIL,
            value=None, values=list(evaluation.values) if ok else None,  # type: ignore[arg-type]
            datetime_start=started, datetime_complete=dt.datetime.now(),
            params=genome.values, distributions=self.space.optuna_distributions(genome),
            user_attrs=attrs, system_attrs={}, intermediate_values={})
        trial._validate()
        # Study.add_trial does exactly this but does not return the new trial's id.
        storage = self.study._storage
        trial_id = storage.create_new_trial(self.study._study_id, template_trial=trial)
        return storage.get_trial_number_from_id(trial_id)


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _server_storage(url: str) -> optuna.storages.RDBStorage:
    """RDBStorage on a database server, retried while workers starting at once race to create its tables."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    def connect() -> optuna.storages.RDBStorage:
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"connect_timeout": 5}, "pool_pre_ping": True},
            heartbeat_interval=None)

    for attempt in range(1, 5):
        try:
            return connect()
        except (IntegrityError, ProgrammingError):  # another process created a table first ("already exists")
            logger.debug("storage tables created concurrently by another process; retry %d", attempt)
            time.sleep(0.2 * attempt)
    return connect()


def _with_driver(url: str) -> str:
    """A bare ``postgresql://`` URL pinned to the installed driver (SQLAlchemy's default differs by version)."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    for module in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{module}://" + url[len("postgresql://"):]
    raise StorageError("PostgreSQL storage needs a driver: pip install 'nasbench[postgres]' (or psycopg)")


def redact(url: str) -> str:
    """The storage URL with its password replaced by ``***`` (for printing)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        user, _, password = cred.partition(":")
        return f"{scheme}://{user}:***@{host}" if password else url
    return url
