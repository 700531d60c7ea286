"""Domain records of all five jobs, plus the cache's own tables (outbox, audit, users, meta).

Every domain record carries ``id``, ``source`` (where it came from: ``local``, ``ehr``, ``hub``),
``remote_version`` (the version the source last gave us) and ``dirty`` (a local change not yet
acknowledged). PHI is kept to the minimum necessary: for a patient, name, birth date, MRN, sex and
one contact number.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, dict[str, Any] | None: JSON}


class Record(Base):
    """A synchronised domain record. Changes made through a local unit of work hit the outbox."""

    __abstract__ = True
    # Fields that are PHI: they never go into logs and reading them is audited.
    phi_fields: frozenset[str] = frozenset()

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(16), default="local")
    remote_version: Mapped[str | None] = mapped_column(String(64))  # the central service's version
    ehr_version: Mapped[str | None] = mapped_column(String(64))  # the EHR's versionId, when it came from one
    dirty: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @classmethod
    def values_from_payload(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The inverse of :meth:`to_payload`: JSON values back into column values.

        Keys that are not columns, and the sync bookkeeping columns, are dropped.
        """
        out: dict[str, Any] = {}
        for col in cls.__table__.columns:
            if col.key not in data or col.key in ("dirty", "source", "remote_version"):
                continue
            value = data[col.key]
            if value is not None and isinstance(col.type, DateTime):
                value = dt.datetime.fromisoformat(value).replace(tzinfo=None)
            elif value is not None and isinstance(col.type, Date):
                value = dt.date.fromisoformat(value[:10])
            out[col.key] = value
        return out

    def to_payload(self) -> dict[str, Any]:
        """The record's own fields as JSON-safe values (for the outbox)."""
        out: dict[str, Any] = {}
        for col in self.__table__.columns:
            if col.name in ("dirty",):
                continue
            value = getattr(self, col.key)
            if isinstance(value, dt.datetime | dt.date):
                value = value.isoformat()
            elif isinstance(value, bytes):
                value = value.hex()
            out[col.key] = value
        return out


# --- people, places -------------------------------------------------------------------------


class Patient(Record):
    __tablename__ = "patients"
    phi_fields = frozenset({"name", "birth_date", "mrn", "phone"})

    mrn: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(16))
    phone: Mapped[str | None] = mapped_column(String(40))


class Organization(Record):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # hospital, practice, payer, vendor


class Unit(Record):
    __tablename__ = "units"

    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(32))  # med-surg, icu, ed, clinic
    organization_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))


class Location(Record):
    __tablename__ = "locations"

    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(32))  # ward, room, bed, storeroom, clinic
    unit_id: Mapped[str | None] = mapped_column(ForeignKey("units.id"), index=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active, closed


class Staff(Record):
    """A practitioner: nursing staff on the roster, referring clinicians and specialists."""

    __tablename__ = "staff"

    name: Mapped[str] = mapped_column(String(200))
    profession: Mapped[str] = mapped_column(String(32))  # RN, LPN, CNA, MD, NP
    specialty: Mapped[str | None] = mapped_column(String(80))
    unit_id: Mapped[str | None] = mapped_column(ForeignKey("units.id"), index=True)
    organization_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))
    employment: Mapped[str] = mapped_column(String(16), default="core")  # core, float, agency
    fte: Mapped[float] = mapped_column(Float, default=1.0)
    npi: Mapped[str | None] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Credential(Record):
    __tablename__ = "credentials"

    staff_id: Mapped[str] = mapped_column(ForeignKey("staff.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))  # RN-LICENSE, BLS, ACLS, PALS, CCRN, CHEMO
    issued_on: Mapped[dt.date | None] = mapped_column(Date)
    expires_on: Mapped[dt.date | None] = mapped_column(Date)


# --- referrals --------------------------------------------------------------------------------


class Referral(Record):
    __tablename__ = "referrals"
    phi_fields = frozenset({"reason", "letter_text", "triage_reasons"})

    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    status: Mapped[str] = mapped_column(String(32), default="new", index=True)
    urgency: Mapped[str | None] = mapped_column(String(16))  # routine, urgent, emergent
    specialty: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str | None] = mapped_column(Text)
    letter_text: Mapped[str | None] = mapped_column(Text)
    referring_staff_id: Mapped[str | None] = mapped_column(ForeignKey("staff.id"))
    referring_org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))
    payer_org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))
    owner: Mapped[str | None] = mapped_column(String(64))  # username of the coordinator
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    closed_reason: Mapped[str | None] = mapped_column(String(200))
    ehr_task_id: Mapped[str | None] = mapped_column(String(64))
    ehr_task_status: Mapped[str | None] = mapped_column(String(32))
    # Where ``urgency`` came from: None (the referrer's priority, e.g. the EHR's), "model" (a
    # triage suggestion from the automatic queue), "coordinator" (a person decided it).
    urgency_source: Mapped[str | None] = mapped_column(String(16))
    urgency_decided_by: Mapped[str | None] = mapped_column(String(64))
    urgency_decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # The latest triage suggestion (services.triage); it never replaces a person's decision.
    triage_urgency: Mapped[str | None] = mapped_column(String(16))
    triage_confidence: Mapped[float | None] = mapped_column(Float)
    triage_queue: Mapped[str | None] = mapped_column(String(8))  # human, auto
    triage_model: Mapped[str | None] = mapped_column(String(64))
    triage_reasons: Mapped[list[Any] | None] = mapped_column(JSON)  # may quote the letter: PHI
    triage_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class ReferralEvent(Record):
    """One entry of a referral's timeline (services.referrals). Append-only by convention.

    ``text`` holds whatever a person typed (a note, a reason) and is PHI; ``data`` holds codes,
    ids and dates only.
    """

    __tablename__ = "referral_events"
    __table_args__ = (Index("ix_referral_events_referral_at", "referral_id", "at"),)
    phi_fields = frozenset({"text"})

    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id"))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    user: Mapped[str] = mapped_column(String(64))
    # created, moved, note, assigned, triage-suggested, urgency-decided, preauth, booked,
    # rescheduled, cancelled, no-show, transition, ehr
    kind: Mapped[str] = mapped_column(String(24))
    text: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PreAuthorization(Record):
    __tablename__ = "preauthorizations"

    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id"), index=True)
    payer_org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))
    plan: Mapped[str | None] = mapped_column(String(120))
    auth_number: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24), default="not-requested")
    requested_on: Mapped[dt.date | None] = mapped_column(Date)
    decided_on: Mapped[dt.date | None] = mapped_column(Date)
    expires_on: Mapped[dt.date | None] = mapped_column(Date)
    documents_requested: Mapped[str | None] = mapped_column(Text)


class Coverage(Record):
    __tablename__ = "coverages"

    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    payer_org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))
    plan: Mapped[str | None] = mapped_column(String(120))
    member_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")


class Schedule(Record):
    __tablename__ = "schedules"

    staff_id: Mapped[str | None] = mapped_column(ForeignKey("staff.id"), index=True)
    service_line: Mapped[str | None] = mapped_column(String(80))
    location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"))


class Slot(Record):
    __tablename__ = "slots"
    __table_args__ = (Index("ix_slots_schedule_start", "schedule_id", "start"),)

    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id"))
    start: Mapped[dt.datetime] = mapped_column(DateTime)
    end: Mapped[dt.datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="free")  # free, busy


class Appointment(Record):
    __tablename__ = "appointments"
    __table_args__ = (Index("ix_appointments_start", "start"),)

    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    referral_id: Mapped[str | None] = mapped_column(ForeignKey("referrals.id"), index=True)
    staff_id: Mapped[str | None] = mapped_column(ForeignKey("staff.id"))
    slot_id: Mapped[str | None] = mapped_column(ForeignKey("slots.id"))
    location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"))
    service_line: Mapped[str | None] = mapped_column(String(80))
    start: Mapped[dt.datetime] = mapped_column(DateTime)
    end: Mapped[dt.datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="booked")


class CareTransition(Record):
    __tablename__ = "care_transitions"
    phi_fields = frozenset({"summary"})

    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id"), index=True)
    summary: Mapped[str | None] = mapped_column(Text)
    checklist: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    informed: Mapped[list[Any]] = mapped_column(JSON, default=list)


class Encounter(Record):
    __tablename__ = "encounters"
    __table_args__ = (Index("ix_encounters_start", "start"),)

    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    klass: Mapped[str] = mapped_column(String(16))  # inpatient, outpatient, emergency
    status: Mapped[str] = mapped_column(String(16), default="finished")
    service_line: Mapped[str | None] = mapped_column(String(80))
    unit_id: Mapped[str | None] = mapped_column(ForeignKey("units.id"))
    bed_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"))
    start: Mapped[dt.datetime] = mapped_column(DateTime)
    end: Mapped[dt.datetime | None] = mapped_column(DateTime)
    admit_source: Mapped[str | None] = mapped_column(String(40))
    discharge_disposition: Mapped[str | None] = mapped_column(String(40))


# --- roster -----------------------------------------------------------------------------------


class Shift(Record):
    __tablename__ = "shifts"
    __table_args__ = (Index("ix_shifts_unit_start", "unit_id", "start"),)

    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id"))
    start: Mapped[dt.datetime] = mapped_column(DateTime)
    end: Mapped[dt.datetime] = mapped_column(DateTime)
    kind: Mapped[str] = mapped_column(String(16))  # day, evening, night
    # Credential code -> how many people holding it the shift needs, e.g. {"RN": 4, "ACLS": 1}.
    requirements: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    surge: Mapped[bool] = mapped_column(Boolean, default=False)


class Assignment(Record):
    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("shift_id", "staff_id"),)

    shift_id: Mapped[str] = mapped_column(ForeignKey("shifts.id"), index=True)
    staff_id: Mapped[str] = mapped_column(ForeignKey("staff.id"), index=True)
    role: Mapped[str] = mapped_column(String(16), default="primary")  # primary, float, on-call
    status: Mapped[str] = mapped_column(String(16), default="scheduled")


# --- supply -----------------------------------------------------------------------------------


class Vendor(Record):
    __tablename__ = "vendors"

    name: Mapped[str] = mapped_column(String(200))
    contact: Mapped[str | None] = mapped_column(String(200))
    lead_time_days: Mapped[int] = mapped_column(Integer, default=3)


class SupplyItem(Record):
    __tablename__ = "supply_items"

    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    barcode: Mapped[str | None] = mapped_column(String(64), index=True)
    category: Mapped[str | None] = mapped_column(String(64))
    unit_of_measure: Mapped[str] = mapped_column(String(16), default="each")
    vendor_id: Mapped[str | None] = mapped_column(ForeignKey("vendors.id"))
    unit_price_cents: Mapped[int | None] = mapped_column(Integer)


class Stock(Record):
    __tablename__ = "stock"
    __table_args__ = (UniqueConstraint("item_id", "location_id"),)

    item_id: Mapped[str] = mapped_column(ForeignKey("supply_items.id"))
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    par_level: Mapped[int] = mapped_column(Integer, default=0)
    reorder_point: Mapped[int] = mapped_column(Integer, default=0)


class Lot(Record):
    __tablename__ = "lots"

    item_id: Mapped[str] = mapped_column(ForeignKey("supply_items.id"), index=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    lot_number: Mapped[str] = mapped_column(String(64))
    expires_on: Mapped[dt.date | None] = mapped_column(Date)
    quantity: Mapped[int] = mapped_column(Integer, default=0)


class PurchaseOrder(Record):
    __tablename__ = "purchase_orders"

    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendors.id"))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    created_by: Mapped[str | None] = mapped_column(String(64))
    ordered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    received_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class PurchaseOrderLine(Record):
    __tablename__ = "purchase_order_lines"

    order_id: Mapped[str] = mapped_column(ForeignKey("purchase_orders.id"), index=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("supply_items.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int | None] = mapped_column(Integer)
    received_quantity: Mapped[int] = mapped_column(Integer, default=0)


# --- follow-up --------------------------------------------------------------------------------


class FollowUpPlan(Record):
    __tablename__ = "followup_plans"

    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    encounter_id: Mapped[str | None] = mapped_column(ForeignKey("encounters.id"))
    condition: Mapped[str] = mapped_column(String(64))  # heart-failure, copd, post-surgical ...
    status: Mapped[str] = mapped_column(String(16), default="active")
    owner: Mapped[str | None] = mapped_column(String(64))
    starts_on: Mapped[dt.date] = mapped_column(Date)


class CheckIn(Record):
    __tablename__ = "checkins"
    phi_fields = frozenset({"answers", "note"})

    plan_id: Mapped[str] = mapped_column(ForeignKey("followup_plans.id"), index=True)
    due_at: Mapped[dt.datetime] = mapped_column(DateTime)
    channel: Mapped[str] = mapped_column(String(16), default="phone")
    status: Mapped[str] = mapped_column(String(16), default="due")  # due, done, missed, escalated
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str | None] = mapped_column(Text)
    escalated_to: Mapped[str | None] = mapped_column(String(64))


# --- the cache's own tables ---------------------------------------------------------------------


class OutboxEntry(Base):
    """A local change waiting to be pushed; written in the same transaction as the change."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_record", "entity", "entity_id"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True, default=new_id)
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(64), index=True)
    op: Mapped[str] = mapped_column(String(8))  # upsert, delete
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    changed_fields: Mapped[list[Any]] = mapped_column(JSON, default=list)
    base_version: Mapped[str | None] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(400))


class AuditEntry(Base):
    """One link of the hash-chained audit log. Never updated, never deleted."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(32))  # ISO-8601 UTC, part of the hashed content
    user: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    workstation: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    record_ids: Mapped[list[Any]] = mapped_column(JSON)
    detail: Mapped[str] = mapped_column(String(400), default="")
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    synced: Mapped[bool] = mapped_column(Boolean, default=False)


class User(Base):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(32))
    verifier: Mapped[str] = mapped_column(String(300))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_full_login: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Quarantined(Base):
    """An inbound record that could not be used, with why; kept for an administrator."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(400))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class SyncConflict(Base):
    """A local change the central service refused because the record moved on; for a person."""

    __tablename__ = "sync_conflicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(64), index=True)
    mine: Mapped[dict[str, Any]] = mapped_column(JSON)  # the local record as the user left it
    mine_fields: Mapped[list[Any]] = mapped_column(JSON, default=list)
    base_version: Mapped[str | None] = mapped_column(String(64))
    server_version: Mapped[str | None] = mapped_column(String(64))
    server_data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    server_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    resolution: Mapped[str | None] = mapped_column(String(16))  # mine, theirs, edited
    resolved_by: Mapped[str | None] = mapped_column(String(64))


class EhrWrite(Base):
    """A local change the EHR should receive (write-back), queued in the same transaction as the
    change. One pending row per record and kind: the writer sends the record as it is then."""

    __tablename__ = "ehr_writes"
    __table_args__ = (Index("ix_ehr_writes_record", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(24))  # task-status, communication, appointment
    entity: Mapped[str] = mapped_column(String(64))  # the cache table of the record
    entity_id: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    # pending, sent, not-accepted (the EHR does not take this change), conflict, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str | None] = mapped_column(String(400))  # PHI-free reason for the user
    remote_id: Mapped[str | None] = mapped_column(String(128))
    remote_version: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


RECORD_TYPES: dict[str, type[Record]] = {
    cls.__tablename__: cls for cls in Record.__subclasses__()  # type: ignore[misc]
}
