"""The Optuna study as the system of record: one trial per evaluated genome, written by the driver."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nasbench.errors import ConfigError, NasbenchError, StorageError
from nasbench.objectives import Evaluation, Objectives
from nasbench.runner._drivers import (
    HEARTBEAT_KEY,
    INCARNATION_KEY,
    Heartbeat,
    driver_alive,
    driver_id,
    incarnation,
)

if TYPE_CHECKING:
    from nasbench.space import Genome, Space

__all__ = ["DEFAULT_STORAGE", "StudyRecorder", "TrialRecord", "open_storage", "open_study", "redact"]

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///nasbench.db"
_META = "nasbench"
#: User attribute of a reservation that does not count: its driver died, or another driver had the
#: genome or the budget first. Such a trial is FAIL with this reason and is not part of the history
#: (a trial that reached COMPLETE or PRUNED counts whatever attributes a racing driver wrote on it).
ABANDONED_KEY = "abandoned"


def abandoned(t: FrozenTrial) -> bool:
    """Whether ``t`` is a reservation that does not count (see ``ABANDONED_KEY``)."""
    return t.state == TrialState.FAIL and ABANDONED_KEY in t.user_attrs
#: Study user attribute of the one driver training a supernet (DARTS, OFA) on the study.
LEASE_KEY = "supernet_driver"
#: Seconds between writing a supernet lease and reading it back (two drivers starting together: one wins).
LEASE_SETTLE_SECONDS = 1.0


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
            return _created_concurrently(lambda: optuna.storages.RDBStorage(url))
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
    ``driver`` (``host:pid``), every metric, and ``failure`` for failed trials.

    Many drivers may share a study (``reserve`` / ``record(reservation=)`` / ``reclaim_stale``):
    a genome is reserved as a RUNNING trial with a heartbeat before it is trained, and that
    trial becomes the result. ``hold_lease`` keeps supernet searches to one driver.
    """

    #: Trial states that count against the budget and make the history.
    counted_states: tuple[TrialState, ...] = (TrialState.COMPLETE, TrialState.FAIL)

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
        self.driver = driver_id()
        self._heartbeat: Heartbeat | None = None
        self._lease: dict[str, Any] | None = None

    def _create_or_resume(self, storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
        try:
            study = optuna.create_study(storage=storage, study_name=name, directions=self.objectives.directions,
                                        load_if_exists=True)
        except Exception as exc:
            raise StorageError(f"cannot create study {name!r} in {redact(self.storage_url)}: {exc}") from None
        stored = study.user_attrs.get(_META)
        if stored is None and study.trials:  # or another driver created it between the two reads
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

    def history(self, skip: set[int] | frozenset[int] = frozenset()) -> list[TrialRecord]:
        """Finished trials (complete or failed during evaluation), in trial order; numbers in ``skip`` left out."""
        return self.records((TrialState.COMPLETE, TrialState.FAIL), lambda t, metrics: Evaluation(
            tuple(t.values) if t.state == TrialState.COMPLETE else None, metrics, t.user_attrs.get("failure")),
            skip)

    def records(self, states: tuple[TrialState, ...],
                evaluation: Callable[[FrozenTrial, dict[str, Any]], Evaluation],
                skip: set[int] | frozenset[int] = frozenset()) -> list[TrialRecord]:
        """Stored trials in ``states`` whose genome still fits the space, with ``evaluation(trial, metrics)``;
        abandoned reservations and the trial numbers in ``skip`` are left out."""
        out = []
        for t in self.study.get_trials(deepcopy=False, states=states):
            if "genome" not in t.user_attrs or abandoned(t) or t.number in skip:
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
               started: dt.datetime, extra: dict[str, Any] | None = None, reservation: int | None = None) -> int:
        """Write one finished trial; return its number.

        With ``reservation`` (a trial id from ``reserve``) that RUNNING trial becomes the result;
        if another driver declared it abandoned meanwhile, a new trial is written instead.
        """
        trial = self._finished_trial(genome, evaluation, strategy, started, extra or {})
        trial._validate()
        storage = self.study._storage
        if reservation is not None:
            number = self._finish(reservation, trial)
            if number is not None:
                return number
            # declared dead while it trained: another driver may be training the genome again, or
            # the budget may be full; then the result is kept, but as a trial that does not count
            clash = self._claim_clash(genome, budget=None, number=None)
            if clash is not None:
                reason = f"trained after its reservation was declared dead; {clash[1]}"
                trial = FrozenTrial(
                    number=-1, trial_id=-1, state=TrialState.FAIL, value=None, values=None,
                    datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete,
                    params=trial.params, distributions=trial.distributions,
                    user_attrs={**trial.user_attrs, ABANDONED_KEY: reason, "failure": reason}, system_attrs={},
                    intermediate_values=trial.intermediate_values)
        # Study.add_trial does exactly this but does not return the new trial's id.
        trial_id = storage.create_new_trial(self.study._study_id, template_trial=trial)
        return storage.get_trial_number_from_id(trial_id)

    def _attrs(self, genome: Genome, strategy: str, extra: dict[str, Any]) -> dict[str, Any]:
        return {"genome": genome.to_json(), "genome_hash": genome.hash, "strategy": strategy, "driver": self.driver,
                INCARNATION_KEY: incarnation(), **extra}

    def _finished_trial(self, genome: Genome, evaluation: Evaluation, strategy: str, started: dt.datetime,
                        extra: dict[str, Any]) -> FrozenTrial:
        """The trial to store for a finished evaluation (subclasses add states and curves)."""
        attrs: dict[str, Any] = {k: _json_value(v) for k, v in evaluation.metrics.items()}
        attrs.update(self._attrs(genome, strategy, extra))
        ok = evaluation.ok and all(math.isfinite(v) for v in evaluation.values or ())
        if not ok:
            attrs["failure"] = evaluation.failure or "non-finite objective value"
        return FrozenTrial(
            number=-1, trial_id=-1, state=TrialState.COMPLETE if ok else TrialState.FAIL,
            value=None, values=list(evaluation.values) if ok else None,  # type: ignore[arg-type]
            datetime_start=started, datetime_complete=dt.datetime.now(),
            params=genome.values, distributions=self.space.optuna_distributions(genome),
            user_attrs=attrs, system_attrs={}, intermediate_values={})

    # -- many drivers ---------------------------------------------------------------------------------
    def _beat(self, key: Any, beat: Callable[[Any], bool | None]) -> None:
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(lambda: open_storage(self.storage_url))
        self._heartbeat.add(key, beat)

    def reserve(self, genome: Genome, budget: int, *, strategy: str) -> int | str:
        """Claim ``genome`` for this driver before training it.

        Writes a RUNNING trial (genome, driver, heartbeat), then looks at every trial: if the genome
        is already finished, or reserved by a live driver whose trial came first, the claim is
        ``"taken"``; if the trials before it (finished, or live reservations) already fill
        ``budget``, it is ``"full"``. Trial numbers order concurrent claims, so exactly one of two
        drivers claiming the same genome (or the last budget slot) at once wins. A lost claim is
        marked abandoned (FAIL, not in the history). Returns the trial id of a won claim.
        """
        storage = self.study._storage
        clash = self._claim_clash(genome, budget, None)  # a cheap look first: most clashes write nothing
        if clash is not None:
            return clash[0]
        attrs = {**self._attrs(genome, strategy, {}), HEARTBEAT_KEY: time.time()}
        template = FrozenTrial(
            number=-1, trial_id=-1, state=TrialState.RUNNING, value=None, values=None,
            datetime_start=dt.datetime.now(), datetime_complete=None, params=genome.values,
            distributions=self.space.optuna_distributions(genome), user_attrs=attrs, system_attrs={},
            intermediate_values={})
        trial_id = storage.create_new_trial(self.study._study_id, template_trial=template)
        clash = self._claim_clash(genome, budget, storage.get_trial_number_from_id(trial_id))
        if clash is not None:
            self._abandon(storage, trial_id, clash[1])
            return clash[0]
        def beat(st: Any) -> bool:
            from optuna.exceptions import UpdateFinishedTrialError

            try:
                st.set_trial_user_attr(trial_id, HEARTBEAT_KEY, time.time())
            except UpdateFinishedTrialError:  # finished, here or by a driver that declared this one dead
                return False
            return True

        self._beat(trial_id, beat)
        return trial_id

    def _claim_clash(self, genome: Genome, budget: int | None, number: int | None) -> tuple[str, str] | None:
        """Why trial ``number`` (None: a claim not written yet) may not have ``genome``: ("taken" or "full",
        reason), or None. Only trials before it count, finished ones and live reservations (``budget``
        None: the genome alone is checked)."""
        now = time.time()
        used = 0
        for t in self.study.get_trials(deepcopy=False):
            if t.number == number or "genome_hash" not in t.user_attrs or abandoned(t):
                continue
            counted = t.state in self.counted_states
            live = (t.state == TrialState.RUNNING and (number is None or t.number < number)
                    and self._alive(t, now))
            if t.user_attrs["genome_hash"] == genome.hash and (counted or live):
                return "taken", f"genome {genome.hash} is trial {t.number}'s ({t.user_attrs.get('driver')})"
            used += int(counted or live)
        if budget is not None and used >= budget:
            return "full", f"the budget of {budget} trials was taken by other drivers"
        return None

    @staticmethod
    def _alive(t: FrozenTrial, now: float) -> bool:
        beat = t.user_attrs.get(HEARTBEAT_KEY)
        if beat is None and t.datetime_start is not None:
            beat = t.datetime_start.timestamp()
        return driver_alive(t.user_attrs.get("driver"), beat, now, t.user_attrs.get(INCARNATION_KEY))

    def _abandon(self, storage: optuna.storages.BaseStorage, trial_id: int, reason: str) -> bool:
        """Mark a RUNNING reservation abandoned (FAIL, out of the history); False if it had finished."""
        from optuna.exceptions import UpdateFinishedTrialError

        if self._heartbeat is not None:
            self._heartbeat.remove(trial_id)
        try:
            storage.set_trial_user_attr(trial_id, ABANDONED_KEY, reason)
            storage.set_trial_user_attr(trial_id, "failure", reason)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            return False
        return True

    def _finish(self, trial_id: int, trial: FrozenTrial) -> int | None:
        """Turn the reservation ``trial_id`` into ``trial``; None if it was abandoned meanwhile."""
        from optuna.exceptions import UpdateFinishedTrialError

        storage = self.study._storage
        if self._heartbeat is not None:
            self._heartbeat.remove(trial_id)
        try:
            have = storage.get_trial_user_attrs(trial_id)  # the reservation's: genome, driver, ... (one write each)
            for key, value in trial.user_attrs.items():
                if key not in have or have[key] != value:
                    storage.set_trial_user_attr(trial_id, key, value)
            for step, value in trial.intermediate_values.items():
                storage.set_trial_intermediate_value(trial_id, step, value)
            storage.set_trial_state_values(trial_id, trial.state, trial.values)
        except UpdateFinishedTrialError:
            logger.warning("reservation %d was declared abandoned by another driver while this one trained it; "
                           "its result is recorded as a new trial", trial_id)
            return None
        return storage.get_trial_number_from_id(trial_id)

    def release(self, reservation: int, reason: str) -> None:
        """Give a reservation back unfinished (interrupted): abandoned, so another driver re-runs it at once."""
        self._abandon(self.study._storage, reservation, reason)

    def reclaim_stale(self) -> list[Genome]:
        """Abandon the reservations of drivers that died; return their genomes (to be re-run by this driver)."""
        out = []
        now = time.time()
        storage = self.study._storage
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if "genome" not in t.user_attrs or ABANDONED_KEY in t.user_attrs or self._alive(t, now):  # RUNNING
                continue
            beat = t.user_attrs.get(HEARTBEAT_KEY)
            age = f"no heartbeat for {now - float(beat):.0f} s" if beat is not None else "no heartbeat"
            if self._abandon(storage, t._trial_id, f"driver {t.user_attrs.get('driver')} stopped ({age}); "
                                                   f"re-run by {self.driver}"):
                try:
                    genome = self.space.load_genome(t.user_attrs["genome"])
                except NasbenchError:
                    continue
                logger.warning("trial %d: driver %s stopped (%s); its genome %s is re-run here", t.number,
                               t.user_attrs.get("driver"), age, genome.hash)
                out.append(genome)
        return out

    def live_reservations(self) -> int:
        """RUNNING reservations of live drivers (this one included)."""
        now = time.time()
        return sum(1 for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if "genome_hash" in t.user_attrs and ABANDONED_KEY not in t.user_attrs and self._alive(t, now))

    def hold_lease(self, what: str) -> None:
        """Become the one driver training this study's supernet (``what``: DARTS, Once-for-All).

        Refuses, with one line naming the holder's host and PID, while another live driver holds
        it. Two drivers starting together both write, wait ``LEASE_SETTLE_SECONDS`` and read
        back: the last write wins and the other is refused. Renewed by the heartbeat; give it
        back with ``close``.
        """
        storage, sid = self.study._storage, self.study._study_id

        def holder() -> dict[str, Any] | None:
            held = storage.get_study_user_attrs(sid).get(LEASE_KEY)
            return held if isinstance(held, dict) else None

        def refuse(held: dict[str, Any]) -> ConfigError:
            host, _, pid = str(held.get("driver")).rpartition(":")
            return ConfigError(f"study {self.name!r} is being searched by another {what} driver (host {host}, "
                               f"PID {pid}): one supernet, one driver; wait for it to finish, stop it, or pass "
                               "--study NEW_NAME")

        held = holder()
        if held is not None and driver_alive(held.get("driver"), held.get(HEARTBEAT_KEY), None,
                                             held.get(INCARNATION_KEY)) and held.get(INCARNATION_KEY) != incarnation():
            raise refuse(held)
        mine = {"driver": self.driver, "token": uuid.uuid4().hex, INCARNATION_KEY: incarnation(),
                HEARTBEAT_KEY: time.time()}
        storage.set_study_user_attr(sid, LEASE_KEY, mine)
        time.sleep(LEASE_SETTLE_SECONDS)
        held = holder()
        if held is None or held.get("token") != mine["token"]:
            raise refuse(held or {})
        self._lease = mine
        # given back by close(), or at the latest when this recorder or the interpreter goes away
        self._lease_release = weakref.finalize(self, _drop_lease, storage, sid, mine["token"])

        def renew(st: Any) -> bool:
            held = st.get_study_user_attrs(sid).get(LEASE_KEY)
            if not isinstance(held, dict) or held.get("token") != mine["token"]:
                logger.warning("the supernet lease of study %r was taken by %s (this driver was thought dead)",
                               self.name, (held or {}).get("driver"))
                return False
            st.set_study_user_attr(sid, LEASE_KEY, {**mine, HEARTBEAT_KEY: time.time()})
            return True

        self._beat("lease", renew)

    def close(self) -> None:
        """Give back what this driver holds: unfinished reservations (abandoned) and a supernet lease."""
        if self._heartbeat is not None:
            for key in self._heartbeat.keys():
                if isinstance(key, int):
                    self._abandon(self.study._storage, key, f"driver {self.driver} stopped before finishing it")
            self._heartbeat.stop()
            self._heartbeat = None
        if self._lease is not None:
            self._lease_release()
            self._lease = None


def _drop_lease(storage: optuna.storages.BaseStorage, study_id: int, token: str) -> None:
    """Clear the study's supernet lease if it is still the one with ``token``."""
    try:
        held = storage.get_study_user_attrs(study_id).get(LEASE_KEY)
        if isinstance(held, dict) and held.get("token") == token:
            storage.set_study_user_attr(study_id, LEASE_KEY, None)
    except Exception as exc:  # at exit the storage may be gone; the lease then expires with its heartbeat
        logger.debug("could not give back the supernet lease: %s", exc)


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _server_storage(url: str) -> optuna.storages.RDBStorage:
    """RDBStorage on a database server (fails in seconds when it does not answer)."""
    return _created_concurrently(lambda: optuna.storages.RDBStorage(
        url, engine_kwargs={"connect_args": {"connect_timeout": 5}, "pool_pre_ping": True},
        heartbeat_interval=None))


def _created_concurrently(connect: Callable[[], optuna.storages.RDBStorage]) -> optuna.storages.RDBStorage:
    """``connect()``, retried while drivers starting at once race to create an empty database's tables."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(1, 6):
        try:
            return connect()
        except (IntegrityError, ProgrammingError, OperationalError) as exc:
            # a row or table another process wrote first ("UNIQUE constraint", "already exists"), or the
            # database locked while it creates them
            if not isinstance(exc, IntegrityError) and not any(w in str(exc) for w in ("already exists", "locked")):
                raise
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
