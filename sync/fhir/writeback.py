"""Write-back: send the queued local changes (``ehr_writes``) to the EHR, where it accepts them.

Each pending row names a record and a kind; the record is sent as it is now (several moves of a
referral before the workstation came back online are one Task update). Per kind:

- ``task-status``: the referral's Task gets the status and businessStatus of the referral's
  workflow column, as a conditional update on the Task's current version (read first).
- ``communication``: a completed follow-up check-in becomes a Communication; the create is made
  safe to retry by a search on its CareOps identifier first (no vendor offers idempotent creates).
- ``appointment``: a booked appointment becomes an Appointment, created the same way, or updated
  on its version when the EHR already has it.

What the vendor does not accept is marked ``not-accepted`` with the reason and stays local; a
record the EHR changed meanwhile is a ``conflict`` for a person; an unreachable EHR leaves the rest
pending for the next run. Nothing here logs a value of the record.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from app.cache.models import Appointment, CheckIn, EhrWrite, FollowUpPlan, Referral, utcnow
from app.logs import Safe
from sync.fhir import outbound, systems
from sync.fhir.auth import SmartAuthError
from sync.fhir.client import (
    EhrAuthFailed,
    EhrError,
    EhrUnavailable,
    SearchContextMissing,
    StaleVersion,
    WriteNotSupported,
)

logger = logging.getLogger(__name__)

WRITER = "ehr-sync"
# A Task the EHR has closed is not reopened from a workstation.
TERMINAL_TASK_STATUSES = frozenset({"completed", "cancelled", "failed", "rejected", "entered-in-error"})


@dataclass
class WriteBackResult:
    counts: Counter[str] = field(default_factory=Counter)  # status -> rows
    stopped: str | None = None  # why the run stopped early (EHR unreachable, sign-in failed)


@dataclass(frozen=True)
class _Outcome:
    status: str
    detail: str | None = None
    remote_id: str | None = None
    remote_version: str | None = None


def _version(resource: dict[str, Any]) -> str | None:
    version = (resource.get("meta") or {}).get("versionId")
    return str(version) if version is not None else None


class EhrWriter:
    def __init__(self, client: Any, cache: Any) -> None:
        self.client = client
        self.cache = cache

    def run(self) -> WriteBackResult:
        """Send every pending write once; stop early when the EHR cannot be reached."""
        result = WriteBackResult()
        with self.cache.reader() as s:
            pending = list(s.scalars(select(EhrWrite).where(EhrWrite.status == "pending").order_by(EhrWrite.id)))
        for row in pending:
            try:
                self.client.capabilities()  # read once, then cached; the profile depends on it
                outcome = self._send(row)
            except (EhrUnavailable, EhrAuthFailed, SmartAuthError) as exc:
                self._record(row, _Outcome("pending", exc.message), attempt=True)
                result.stopped = exc.message
                break
            result.counts[outcome.status] += 1
            self._record(row, outcome, attempt=True)
        return result

    # -- one row -----------------------------------------------------------------------------

    def _send(self, row: EhrWrite) -> _Outcome:
        send = {"task-status": self._task_status, "communication": self._communication,
                "appointment": self._appointment}.get(row.kind)
        if send is None:
            return _Outcome("failed", "unknown kind of change")
        try:
            return send(row)
        except (WriteNotSupported, SearchContextMissing) as exc:
            # SearchContextMissing: the vendor cannot be searched for the record first, so a create
            # could not be made safe to retry; it is not attempted.
            return _Outcome("not-accepted", exc.message)
        except StaleVersion:
            return _Outcome("conflict", "the EHR changed this record meanwhile")
        except (EhrUnavailable, EhrAuthFailed, SmartAuthError):
            raise
        except EhrError as exc:
            logger.info("ehr refused a %s write", Safe(row.kind))
            return _Outcome("failed", exc.message)

    def _context(self, rtype: str, patient_id: str, when: dt.datetime | None = None) -> dict[str, Any] | None:
        """The search context the vendor wants on ``rtype`` for a search-before-create: the
        patient, and a closed date range around ``when`` where the vendor needs one."""
        rule = self.client.profile.search_context.get(rtype)
        if rule is None or rule.from_config:
            return None
        context: dict[str, Any] = {}
        if "patient" in rule.any_of:
            context["patient"] = patient_id
        elif "subject" in rule.any_of:
            context["subject"] = f"Patient/{patient_id}"
        if rule.date_range and when is not None:
            day = dt.timedelta(days=1)
            context[rule.date_range] = [f"ge{(when - day).date().isoformat()}", f"lt{(when + day).date().isoformat()}"]
        return context or None

    def _save(self, rtype: str, current: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        """Change ``fields`` of ``current`` on its version: an update, or a patch where the vendor
        takes only patches (Oracle's Appointment)."""
        profile = self.client.profile
        if profile.allows(rtype, "update") or not profile.allows(rtype, "patch"):
            return self.client.update(current | fields, if_match=_version(current))
        ops = [{"op": "add", "path": f"/{name}", "value": value} for name, value in fields.items()]
        patched = self.client.patch(rtype, current["id"], ops, if_match=_version(current))
        return patched or self.client.read(rtype, current["id"])

    def _task_status(self, row: EhrWrite) -> _Outcome:
        with self.cache.reader() as s:
            referral = s.get(Referral, row.entity_id)
        if referral is None:
            return _Outcome("failed", "the referral no longer exists here")
        if referral.source != "ehr":
            return _Outcome("not-accepted", "the referral was not received from the EHR")
        try:
            fields = outbound.task_status_fields(referral)
        except ValueError:
            return _Outcome("failed", "the referral's status has no EHR task status")
        if referral.ehr_task_id is None:
            created = self.client.create(outbound.new_task(referral), identifier=(systems.TASK, referral.id),
                                         context=self._context("Task", referral.patient_id))
            return self._task_done(referral.id, created)
        for attempt in range(2):
            current = self.client.read("Task", referral.ehr_task_id)
            if current.get("status") in TERMINAL_TASK_STATUSES and current.get("status") != fields["status"]:
                return _Outcome("conflict", "the EHR closed this task meanwhile")
            try:
                saved = self._save("Task", current, fields)
            except StaleVersion:
                if attempt:
                    raise
                continue  # written between our read and our write: read again, once
            return self._task_done(referral.id, saved)
        raise AssertionError("unreachable")

    def _task_done(self, referral_id: str, task: dict[str, Any]) -> _Outcome:
        with self.cache.unit_of_work(user=WRITER, origin="sync") as s:
            s.execute(update(Referral).where(Referral.id == referral_id)
                      .values(ehr_task_id=task.get("id"), ehr_task_status=str(task.get("status") or "")[:32]))
        return _Outcome("sent", None, task.get("id"), _version(task))

    def _communication(self, row: EhrWrite) -> _Outcome:
        with self.cache.reader() as s:
            checkin = s.get(CheckIn, row.entity_id)
            plan = s.get(FollowUpPlan, checkin.plan_id) if checkin is not None else None
        if checkin is None or plan is None:
            return _Outcome("failed", "the check-in no longer exists here")
        try:
            resource = outbound.checkin_to_communication(checkin, plan, plan.patient_id)
        except ValueError:
            return _Outcome("failed", "the check-in has no outcome to report yet")
        created = self.client.create(resource, identifier=(systems.CHECKIN, checkin.id),
                                     context=self._context("Communication", plan.patient_id))
        return _Outcome("sent", None, created.get("id"), _version(created))

    def _appointment(self, row: EhrWrite) -> _Outcome:
        with self.cache.reader() as s:
            appointment = s.get(Appointment, row.entity_id)
            sent_as = s.scalar(
                select(EhrWrite.remote_id).where(
                    EhrWrite.entity == "appointments", EhrWrite.entity_id == row.entity_id,
                    EhrWrite.status == "sent", EhrWrite.remote_id.is_not(None),
                ).order_by(EhrWrite.id.desc()).limit(1)
            )
        if appointment is None:
            return _Outcome("failed", "the appointment no longer exists here")
        resource = outbound.appointment_to_fhir(appointment)
        remote_id = appointment.id if appointment.source == "ehr" else sent_as
        if remote_id is None:
            done = self.client.create(resource, identifier=(systems.APPOINTMENT, appointment.id),
                                      context=self._context("Appointment", appointment.patient_id, appointment.start))
        else:  # the EHR has it: change it on its version
            current = self.client.read("Appointment", remote_id)
            fields = {k: v for k, v in resource.items() if k not in ("id", "identifier", "resourceType")}
            done = self._save("Appointment", current, fields)
        return _Outcome("sent", None, done.get("id"), _version(done))

    def _record(self, row: EhrWrite, outcome: _Outcome, *, attempt: bool) -> None:
        with self.cache.unit_of_work(user=WRITER, origin="sync") as s:
            s.execute(update(EhrWrite).where(EhrWrite.id == row.id).values(
                status=outcome.status, detail=(outcome.detail or None) and outcome.detail[:400],
                remote_id=outcome.remote_id, remote_version=outcome.remote_version,
                attempts=EhrWrite.attempts + (1 if attempt else 0), updated_at=utcnow(),
            ))
