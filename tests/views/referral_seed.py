"""A synthetic referral office for the board's tests, screenshots and bench (made-up names only).

Referrals are written as a sync would write them (origin "sync": no outbox), relative to the real
clock, since the board's service runs on it. Each column gets referrals whose facts agree with
it: Awaiting pre-auth has a requested pre-authorization, Scheduled a booked appointment, and so on.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from app.cache.models import (
    Appointment,
    Organization,
    Patient,
    PreAuthorization,
    Referral,
    ReferralEvent,
    Schedule,
    Slot,
    Staff,
    utcnow,
)

GIVEN = ("Ada", "Boris", "Clara", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kaia", "Luca",
         "Mira", "Nils", "Olga", "Pavel", "Rosa", "Sami", "Tove", "Umar")  # fmt: skip
FAMILY = ("Testperson", "Sample", "Example", "Synthetic", "Mockford", "Placeholder", "Dummett", "Fictus",
          "Madeup", "Imaginary", "Specimen", "Notreal")  # fmt: skip
SPECIALTIES = ("Cardiology", "Dermatology", "Orthopedics", "Neurology", "Gastroenterology")
ACME, SELFPAY = "syn-org-acme", "syn-org-selfpay"
# Status mix of the open board (Completed and Closed are added on top when asked for).
MIX = (("new", 0.22), ("triage", 0.22), ("awaiting-preauth", 0.18), ("ready-to-schedule", 0.2), ("scheduled", 0.18))


@dataclass
class Office:
    referral_ids: dict[str, list[str]] = field(default_factory=dict)  # status -> ids
    slot_ids: dict[str, list[str]] = field(default_factory=dict)  # specialty -> free future slots
    now: dt.datetime = field(default_factory=utcnow)

    def first(self, status: str) -> str:
        return self.referral_ids[status][0]


def seed_office(cache, n: int = 60, *, terminal: int = 0, seed: int = 7, owner: str = "demo-coordinator",
                slots_per_day: int = 2, batch: int = 500) -> Office:  # fmt: skip
    """``n`` open referrals spread over the open columns (plus ``terminal`` completed and closed)."""
    rng = random.Random(seed)
    now = utcnow().replace(microsecond=0)
    office = Office(now=now)
    with cache.unit_of_work(user="seed", origin="sync") as s:
        s.add_all([
            Organization(id=ACME, name="Acme Health", kind="payer", source="ehr"),
            Organization(id=SELFPAY, name="Self Pay Plan", kind="payer", source="ehr"),
        ])  # fmt: skip
        s.flush()
        for i, specialty in enumerate(SPECIALTIES):
            s.add(Staff(id=f"syn-dr-{i}", name=f"Dr {FAMILY[i]}", profession="MD", specialty=specialty, source="ehr"))
            s.flush()
            s.add(Schedule(id=f"syn-sch-{i}", staff_id=f"syn-dr-{i}", service_line=specialty, source="ehr"))
            s.flush()
            ids = []
            for day in range(1, 15):
                for k in range(slots_per_day):
                    start = (now + dt.timedelta(days=day)).replace(hour=9 + 2 * k, minute=0, second=0)
                    sid = f"syn-slot-{i}-{day}-{k}"
                    s.add(Slot(id=sid, schedule_id=f"syn-sch-{i}", start=start, end=start + dt.timedelta(minutes=30),
                               status="free", source="ehr"))  # fmt: skip
                    ids.append(sid)
            office.slot_ids[specialty] = ids
    statuses = [status for status, share in MIX for _ in range(round(n * share))][:n]
    statuses += ["new"] * (n - len(statuses))
    statuses += ["completed", "closed"] * (terminal // 2)
    for start in range(0, len(statuses), batch):
        with cache.unit_of_work(user="seed", origin="sync") as s:
            for i in range(start, min(start + batch, len(statuses))):
                _add_referral(s, rng, i, statuses[i], now, owner, office)
    return office


def _add_referral(s, rng: random.Random, i: int, status: str, now: dt.datetime, owner: str, office: Office) -> None:
    pid, rid = f"syn-pat-{i}", f"syn-ref-{i}"
    s.add(Patient(id=pid, mrn=f"MRN{800000 + i}", name=f"{GIVEN[i % len(GIVEN)]} {FAMILY[(i // 3) % len(FAMILY)]}",
                  birth_date=dt.date(1935 + rng.randrange(80), 1 + rng.randrange(12), 1 + rng.randrange(28)),
                  sex=rng.choice(["female", "male"]), source="ehr"))  # fmt: skip
    s.flush()
    specialty = SPECIALTIES[i % len(SPECIALTIES)]
    urgency = None if status == "new" or (status == "triage" and i % 3 == 0) else rng.choice(
        ["routine", "routine", "urgent", "emergent"])  # fmt: skip
    payer = {0: ACME, 1: SELFPAY}.get(i % 3) if status in ("awaiting-preauth", "scheduled") or i % 4 else None
    if status == "ready-to-schedule" and i % 2:
        payer = None
    days = rng.choice([0, 0, 1, 1, 2, 3, 4, 5, 6, 8, 12, 20, 35])
    human = status in ("new", "triage") and i % 4 == 1
    s.add(Referral(
        id=rid, patient_id=pid, status=status, urgency=urgency, specialty=specialty, payer_org_id=payer,
        owner=owner if i % 3 == 0 else (None if i % 3 == 1 else "casey2"), received_at=now - dt.timedelta(days=days, hours=i % 7),
        source="ehr" if i % 2 else "local", reason=f"Synthetic reason for referral {i}",
        letter_text=f"Dear colleague,\n\nPlease see this synthetic patient about {specialty.lower()} concerns.\n\nRegards,\nDr Sender",
        closed_reason="Patient declined (synthetic)" if status == "closed" else None,
        triage_urgency=rng.choice(["urgent", "routine"]) if human else None, triage_confidence=0.55 if human else None,
        triage_queue="human" if human else None, triage_model="syn-model-1" if human else None,
        triage_reasons=["Mentions chest pain (synthetic)", "Low confidence"] if human else None,
        triage_at=now - dt.timedelta(hours=2) if human else None,
    ))  # fmt: skip
    s.flush()
    s.add(ReferralEvent(referral_id=rid, at=now - dt.timedelta(days=days), user="seed", kind="created",
                        data={"from": "ehr"}))  # fmt: skip
    if payer and status in ("awaiting-preauth", "ready-to-schedule", "scheduled", "completed"):
        approved = status != "awaiting-preauth"
        s.add(PreAuthorization(
            referral_id=rid, payer_org_id=payer, status="approved" if approved else "requested",
            requested_on=(now - dt.timedelta(days=days)).date(), decided_on=now.date() if approved else None,
            auth_number=f"AUTH-{i}" if approved else None, expires_on=(now + dt.timedelta(days=90)).date() if approved else None,
            source="local",
        ))  # fmt: skip
    if status in ("scheduled", "completed"):
        start = now + dt.timedelta(days=3 + i % 9) if status == "scheduled" else now - dt.timedelta(days=2)
        booked_at = now - dt.timedelta(days=days) + dt.timedelta(hours=20)
        for k, (kind, text, data) in enumerate((
            ("note", "Called the patient: mornings suit best; an interpreter is requested.", {}),
            ("booked", None, {"start": start.isoformat()}),
            ("moved", None, {"from": "ready-to-schedule", "to": "scheduled", "cause": "booked"}),
            ("note", "The specialist's office confirmed the letter and imaging arrived.", {}),
        )):  # fmt: skip
            s.add(ReferralEvent(referral_id=rid, at=booked_at + dt.timedelta(minutes=k), user=owner, kind=kind,
                                text=text, data=data))  # fmt: skip
        s.add(Appointment(patient_id=pid, referral_id=rid, service_line=specialty, start=start,
                          end=start + dt.timedelta(minutes=30), status="booked" if status == "scheduled" else "fulfilled",
                          source="ehr"))  # fmt: skip
    office.referral_ids.setdefault(status, []).append(rid)
