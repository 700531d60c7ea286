"""The synthetic demo data set: deterministic, realistic in size and shape, valid FHIR R4."""

from __future__ import annotations

import collections
import hashlib
import json
import re
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from app.demo import generate as demo
from sync.fhir import systems

SMALL = 0.05
TYPES = {
    "Appointment", "CarePlan", "Communication", "CommunicationRequest", "Coverage", "Encounter", "Location",
    "Organization", "Patient", "Practitioner", "PractitionerRole", "Schedule", "ServiceRequest", "Slot", "Task",
}
ANCHOR = datetime.fromisoformat("2026-11-01T00:00:00-05:00")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(.*)$")
OFFSET = re.compile(r"^(Z|[+-]\d{2}:\d{2})$")


def load(folder: Path) -> dict[str, list[dict]]:
    return {
        p.stem: [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()]
        for p in sorted(folder.glob("*.ndjson"))
    }


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def code(cc: dict, system: str | None = None) -> str:
    codings = [c for c in cc["coding"] if system is None or c["system"] == system]
    return codings[0]["code"]


def codes(resource: dict, key: str, system: str) -> list[str]:
    return [c["code"] for cc in resource.get(key, []) for c in cc["coding"] if c["system"] == system]


def walk(value, path=""):
    """Yield (path, key, value) for every key in a JSON tree."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield path, k, v
            yield from walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for item in value:
            yield from walk(item, path)


def dt(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict[str, int], dict[str, list[dict]]]:
    out = tmp_path_factory.mktemp("demo-small")
    counts = demo.generate(out, scale=SMALL)
    return out, counts, load(out)


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[dict[str, int], dict[str, list[dict]], float]:
    out = tmp_path_factory.mktemp("demo-full")
    t0 = time.perf_counter()
    counts = demo.generate(out)
    elapsed = time.perf_counter() - t0
    return counts, load(out), elapsed


# -- determinism and file format ---------------------------------------------------------------


def test_two_runs_are_byte_identical(tmp_path: Path, small):
    out_a, _, _ = small
    out_b = tmp_path / "b"
    demo.generate(out_b, scale=SMALL)
    assert digests(out_a) == digests(out_b)
    # and a different seed gives a different data set
    out_c = tmp_path / "c"
    demo.generate(out_c, seed=7, scale=SMALL)
    assert digests(out_c)["Patient.ndjson"] != digests(out_a)["Patient.ndjson"]


def test_files_are_compact_sorted_ndjson_with_a_manifest(small):
    out, counts, data = small
    assert {p.name for p in out.iterdir()} == {f"{t}.ndjson" for t in TYPES} | {"manifest.json"}
    for rtype in TYPES:
        raw = (out / f"{rtype}.ndjson").read_bytes()
        assert raw.endswith(b"\n") and not raw.endswith(b"\n\n")
        lines = raw.decode("utf-8").split("\n")[:-1]
        assert len(lines) == counts[rtype] > 0
        for line in lines[:50]:
            obj = json.loads(line)
            assert line == json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["transactionTime"] == "2026-11-01T05:00:00Z"
    assert manifest["requiresAccessToken"] is False and manifest["error"] == []
    assert {o["type"]: o["count"] for o in manifest["output"]} == counts
    for o in manifest["output"]:
        assert o["url"] == f"{o['type']}.ndjson"
        assert sum(1 for _ in open(out / o["url"], encoding="utf-8")) == o["count"] == len(data[o["type"]])


def test_a_failed_run_leaves_the_previous_files_complete(tmp_path: Path, monkeypatch):
    out = tmp_path / "demo"
    demo.generate(out, scale=0.02)
    before = digests(out)
    real_replace = demo.os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 4:
            raise OSError("disk pulled")
        return real_replace(src, dst)

    monkeypatch.setattr(demo.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk pulled"):
        demo.generate(out, seed=99, scale=0.02)
    after = digests(out)
    assert set(after) == set(before)  # no temp files left behind
    assert after["manifest.json"] == before["manifest.json"]  # manifest goes last
    for name in after:  # every file is a complete file from one run or the other
        if name.endswith(".ndjson"):
            text = (out / name).read_text(encoding="utf-8")
            assert text.endswith("\n")
            [json.loads(line) for line in text.splitlines()]


def test_scale_is_validated(tmp_path: Path):
    with pytest.raises(ValueError):
        demo.generate(tmp_path, scale=0)


# -- FHIR validity and integrity ---------------------------------------------------------------


def test_every_resource_validates_as_fhir_r4(small):
    from fhir.resources.R4B import get_fhir_model_class

    _, _, data = small
    for rtype, items in data.items():
        model = get_fhir_model_class(rtype)
        for res in items:
            model.model_validate(res)


def test_references_resolve_and_ids_are_unique(small):
    _, _, data = small
    known = set()
    for rtype, items in data.items():
        ids = [r["id"] for r in items]
        assert len(ids) == len(set(ids)), rtype
        assert all(r["resourceType"] == rtype for r in items)
        known.update(f"{rtype}/{i}" for i in ids)
    dangling = [
        (r["resourceType"], r["id"], v)
        for items in data.values() for r in items
        for _, k, v in walk(r) if k == "reference" and v not in known
    ]
    assert dangling == []


def test_meta_and_datetimes(small):
    _, _, data = small
    for items in data.values():
        for r in items:
            assert r["meta"] == {"versionId": "1", "lastUpdated": "2026-11-01T05:00:00Z"}
            for path, key, value in walk(r):
                if isinstance(value, str) and (m := DATETIME.match(value)):
                    assert OFFSET.match(m.group(3)), (r["id"], path, key, value)


def test_patients_are_synthetic_and_well_formed(small):
    _, _, data = small
    mrns = [p["identifier"][0]["value"] for p in data["Patient"]]
    assert len(set(mrns)) == len(mrns)
    for p in data["Patient"]:
        assert p["identifier"][0]["system"] == systems.MRN
        assert re.fullmatch(r"MRN\d{7}", p["identifier"][0]["value"])
        assert p["name"][0]["family"] in demo.FAMILY
        assert set(p["name"][0]["given"]) <= set(demo.GIVEN_FEMALE + demo.GIVEN_MALE)
        assert re.fullmatch(r"\d{3}-555-01\d{2}", p["telecom"][0]["value"])
        assert date(1930, 1, 1) <= date.fromisoformat(p["birthDate"]) <= date(2024, 12, 31)


# -- realistic volume and mix at full scale -------------------------------------------------------


def test_full_scale_counts(full):
    counts, data, elapsed = full
    assert elapsed < 30, f"full-scale generation took {elapsed:.1f}s"
    assert 550 <= counts["Patient"] <= 650
    assert 950 <= counts["ServiceRequest"] == counts["Task"] <= 1050
    assert 0.85 * counts["Patient"] <= counts["Coverage"] < counts["Patient"]
    assert 19_000 <= counts["Encounter"] <= 21_000
    assert 2_700 <= counts["Appointment"] <= 3_300
    orgs = collections.Counter(code(o["type"][0]) for o in data["Organization"])
    assert orgs["prov"] == 1 + 8 and orgs["pay"] == 6
    physical = collections.Counter(code(loc["physicalType"]) for loc in data["Location"])
    assert physical == {"wa": 3, "bd": 32 + 16 + 24, "ro": 6 + 3}
    assert counts["Practitioner"] == counts["PractitionerRole"] == 160
    assert counts["Schedule"] == 24 and counts["Slot"] > 4_000
    assert 150 <= counts["CarePlan"] <= 280
    assert 2.5 * counts["CarePlan"] <= counts["CommunicationRequest"] <= 3.5 * counts["CarePlan"]
    assert 0.6 * counts["CommunicationRequest"] <= counts["Communication"] < counts["CommunicationRequest"]


def test_encounter_mix_and_timing(full):
    _, data, _ = full
    enc = data["Encounter"]
    by_class = collections.Counter(e["class"]["code"] for e in enc)
    assert abs(by_class["AMB"] / len(enc) - 0.70) < 0.03
    assert abs(by_class["EMER"] / len(enc) - 0.18) < 0.03
    assert abs(by_class["IMP"] / len(enc) - 0.12) < 0.03
    year_ago = ANCHOR - timedelta(days=366)
    for e in enc:
        start = dt(e["period"]["start"])
        assert year_ago <= start < ANCHOR
        if e["status"] == "finished":
            assert start < dt(e["period"]["end"]) <= ANCHOR
        else:
            assert e["status"] == "in-progress" and e["class"]["code"] == "IMP" and "end" not in e["period"]
    # ED arrivals peak in the afternoon/evening; clinics run on weekdays in daytime.
    ed_hours = collections.Counter(dt(e["period"]["start"]).hour for e in enc if e["class"]["code"] == "EMER")
    assert sum(ed_hours[h] for h in range(14, 21)) > 2.5 * sum(ed_hours[h] for h in range(2, 9))
    amb = [dt(e["period"]["start"]) for e in enc if e["class"]["code"] == "AMB"]
    assert sum(s.weekday() < 5 for s in amb) / len(amb) > 0.95
    assert all(7 <= s.hour <= 17 for s in amb)


def test_inpatients_have_beds_stays_and_a_current_census(full):
    _, data, _ = full
    beds = {loc["id"]: loc["partOf"]["reference"] for loc in data["Location"] if code(loc["physicalType"]) == "bd"}
    imp = [e for e in data["Encounter"] if e["class"]["code"] == "IMP"]
    current = [e for e in imp if e["status"] == "in-progress"]
    assert 5 <= len(current) <= 48
    occupancy = collections.defaultdict(list)
    for e in imp:
        bed = e["location"][0]["location"]["reference"].removeprefix("Location/")
        assert beds[bed] in ("Location/loc-4w", "Location/loc-icu")
        assert e["hospitalization"]["admitSource"]["text"]
        start = dt(e["period"]["start"])
        if e["status"] == "finished":
            end = dt(e["period"]["end"])
            assert e["hospitalization"]["dischargeDisposition"]["text"]
            assert 1 <= (end.date() - start.date()).days <= 14
        else:
            end = datetime.max.replace(tzinfo=start.tzinfo)
        occupancy[bed].append((start, end))
    for stays in occupancy.values():  # never two patients in one bed
        stays.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(stays, stays[1:]))


def test_appointments_no_shows_and_slots(full):
    _, data, _ = full
    appts = data["Appointment"]
    status = collections.Counter(a["status"] for a in appts)
    assert set(status) == {"booked", "fulfilled", "noshow", "cancelled"}
    by_line = collections.defaultdict(collections.Counter)
    for a in appts:
        by_line[a["serviceType"][0]["text"]][a["status"]] += 1
        actors = [p["actor"]["reference"].split("/")[0] for p in a["participant"]]
        assert actors == ["Patient", "Practitioner", "Location"]
        if a["status"] == "booked":
            assert dt(a["start"]) > ANCHOR and a["slot"] and a["basedOn"]
        else:
            assert dt(a["end"]) <= ANCHOR
    rates = {line: c["noshow"] / (c["noshow"] + c["fulfilled"]) for line, c in by_line.items()}
    assert set(rates) == set(demo.SPECIALTIES)
    assert all(0.06 <= r <= 0.17 for r in rates.values()), rates
    assert max(rates.values()) - min(rates.values()) > 0.03  # varies by service line
    slots = {s["id"]: s for s in data["Slot"]}
    horizon = ANCHOR + timedelta(days=43)
    for s in slots.values():
        start, end = dt(s["start"]), dt(s["end"])
        assert ANCHOR < start < horizon and end - start == timedelta(minutes=30)
        assert start.weekday() < 5 and 8 <= start.hour < 16
    booked_slots = [a["slot"][0]["reference"].removeprefix("Slot/") for a in appts if a["status"] == "booked"]
    assert len(booked_slots) == len(set(booked_slots))
    assert all(slots[s]["status"] == "busy" for s in booked_slots)
    free = sum(s["status"] == "free" for s in slots.values())
    assert 0.2 < free / len(slots) < 0.9


def test_referrals_and_their_tasks_agree(full):
    _, data, _ = full
    srs = {s["id"]: s for s in data["ServiceRequest"]}
    priority = collections.Counter(s["priority"] for s in srs.values())
    assert priority["routine"] > priority["urgent"] > priority["asap"] > priority["stat"] > 0
    assert abs(priority["routine"] / len(srs) - 0.65) < 0.06
    task_for = {"new": "requested", "triage": "accepted", "awaiting-preauth": "in-progress",
                "ready-to-schedule": "in-progress", "scheduled": "in-progress",
                "completed": "completed", "closed": "cancelled"}
    board = collections.Counter()
    for t in data["Task"]:
        sr = srs[t["focus"]["reference"].removeprefix("ServiceRequest/")]
        column = code(t["businessStatus"], systems.WORKFLOW)
        board[column] += 1
        assert t["status"] == task_for[column]
        assert sr["status"] == {"completed": "completed", "closed": "revoked"}.get(column, "active")
        assert t["for"] == sr["subject"]
        assert dt(sr["authoredOn"]) <= dt(t["lastModified"]) <= ANCHOR
        assert ANCHOR - timedelta(days=121) <= dt(sr["authoredOn"]) < ANCHOR
    assert all(board[c] >= 10 for c in task_for), board  # every board column has work in it
    notes = [s["note"][0]["text"] for s in srs.values()]
    assert len(set(notes)) == len(notes)
    assert all(len(re.findall(r"[.!?](\s|$)", n)) >= 3 for n in notes)
    for s in srs.values():
        assert codes(s, "category", systems.SNOMED) == [systems.REFERRAL_CATEGORY_CODE]
        assert s["code"]["text"] == f"Referral to {s['performerType']['text']}"
        assert s["performerType"]["text"] in demo.SPECIALTIES
    stat_notes = [s["note"][0]["text"] for s in srs.values() if s["priority"] == "stat"]
    assert all(re.search(r"red-flag|emergency|URGENT|cannot wait", n) for n in stat_notes)
    routine_notes = [s["note"][0]["text"] for s in srs.values() if s["priority"] == "routine"]
    assert not any(re.search(r"emergency|URGENT|cannot wait", n) for n in routine_notes)
    # newer referrals are more often still open
    def open_share(lo, hi):
        sel = [t for t in data["Task"] if lo <= (ANCHOR - dt(t["authoredOn"])).days < hi]
        return sum(t["status"] not in ("completed", "cancelled") for t in sel) / len(sel)
    assert open_share(0, 30) > open_share(30, 60) > open_share(90, 121)


def test_staff_roles_and_credentials(full):
    _, data, _ = full
    roles = data["PractitionerRole"]
    profession = collections.Counter(codes(r, "code", systems.PROFESSION)[0] for r in roles)
    employment = collections.Counter(codes(r, "code", systems.EMPLOYMENT)[0] for r in roles)
    nurses = profession["RN"] + profession["LPN"] + profession["CNA"]
    assert nurses == 120 and profession["RN"] > nurses / 2
    assert profession["MD"] + profession["NP"] == 40
    assert 12 <= employment["float"] <= 18 and 1 <= employment["agency"] <= 6
    assert all(r["specialty"][0]["text"] for r in roles if codes(r, "code", systems.PROFESSION)[0] in ("MD", "NP"))
    npis = [p["identifier"][0]["value"] for p in data["Practitioner"]]
    assert len(set(npis)) == len(npis) and all(re.fullmatch(r"\d{10}", n) for n in npis)
    ward_of = {r["practitioner"]["reference"]: [loc["reference"] for loc in r.get("location", [])] for r in roles}
    creds = []
    per_unit = collections.defaultdict(collections.Counter)
    for p in data["Practitioner"]:
        held = [code(q["code"], systems.CREDENTIAL) for q in p.get("qualification", [])]
        creds += [q["period"] for q in p.get("qualification", [])]
        wards = ward_of[f"Practitioner/{p['id']}"]
        if held and len(wards) == 1 and "RN-LICENSE" in held:
            per_unit[wards[0]]["nurses"] += 1
            per_unit[wards[0]].update(held)
    icu, ed = per_unit["Location/loc-icu"], per_unit["Location/loc-ed"]
    assert icu["ACLS"] / icu["nurses"] > 0.8 and icu["CCRN"] / icu["nurses"] > 0.5
    assert ed["ACLS"] / ed["nurses"] > 0.8 and ed["PALS"] / ed["nurses"] > 0.6 and ed["TNCC"] / ed["nurses"] > 0.5
    soon = "2026-12-01"
    flagged = [c for c in creds if c["end"] <= soon]
    assert any(c["end"] < "2026-11-01" for c in flagged) and any(c["end"] >= "2026-11-01" for c in flagged)
    assert 0.015 <= len(flagged) / len(creds) <= 0.04


def test_followup_plans_check_ins_and_contacts(full):
    _, data, _ = full
    encounters = {e["id"]: e for e in data["Encounter"]}
    plans = {p["id"]: p for p in data["CarePlan"]}
    conditions = collections.Counter()
    for p in plans.values():
        enc = encounters[p["encounter"]["reference"].removeprefix("Encounter/")]
        assert enc["class"]["code"] == "IMP" and enc["status"] == "finished" and p["subject"] == enc["subject"]
        assert enc["hospitalization"]["dischargeDisposition"]["text"] in demo.FOLLOWUP_DISPOSITIONS
        discharged = dt(enc["period"]["end"])
        assert ANCHOR - timedelta(days=demo.FOLLOWUP_WINDOW_DAYS + 1) <= discharged < ANCHOR
        assert p["period"]["start"] == discharged.date().isoformat()
        assert codes(p, "category", systems.SNOMED) == [systems.DISCHARGE_CARE_PLAN_CODE]
        condition = codes(p, "category", systems.FOLLOWUP_CONDITION)[0]
        assert p["title"] == demo.FOLLOWUP_TITLES[condition]
        conditions[condition] += 1
    assert {"heart-failure", "copd", "pneumonia", "post-surgical"} <= set(conditions)
    assert {p["status"] for p in plans.values()} == {"active", "completed", "revoked"}
    requests = {r["id"]: r for r in data["CommunicationRequest"]}
    by_plan = collections.defaultdict(list)
    for r in requests.values():
        p = plans[r["basedOn"][0]["reference"].removeprefix("CarePlan/")]
        by_plan[p["id"]].append(r)
        assert r["subject"] == p["subject"]
        days = (dt(r["occurrenceDateTime"]).date() - date.fromisoformat(p["period"]["start"])).days
        assert days in demo.CHECKIN_DAYS[codes(p, "category", systems.FOLLOWUP_CONDITION)[0]]
    for p_id, rs in by_plan.items():  # once called off, the rest is off too, and so is the plan
        revoked = [r["status"] == "revoked" for r in rs]
        assert revoked == sorted(revoked) and (plans[p_id]["status"] == "revoked") == any(revoked)
    contacts = collections.Counter()
    channels = collections.Counter()
    for c in data["Communication"]:
        assert "payload" not in c and "note" not in c
        target = c["basedOn"][0]["reference"]
        if target.startswith("CarePlan/"):  # a patient calling in
            assert c["status"] == "completed" and dt(c["sent"]) < ANCHOR
            continue
        r = requests[target.removeprefix("CommunicationRequest/")]
        assert c["subject"] == r["subject"] and c["medium"] == r["medium"]
        assert dt(r["occurrenceDateTime"]) < ANCHOR
        if c["status"] == "completed":
            assert r["status"] == "completed" and dt(r["occurrenceDateTime"]) <= dt(c["sent"]) < ANCHOR
            contacts[code(c["topic"], systems.CHECKIN_OUTCOME)] += 1
        else:
            assert c["status"] == "not-done" and r["status"] == "active" and "sent" not in c
            contacts[code(c["statusReason"], systems.CHECKIN_OUTCOME)] += 1
        channels[code(r["medium"][0], systems.PARTICIPATION_MODE)] += 1
    assert contacts["stable"] > contacts["concern"] > contacts["escalated"] > 0 and contacts["unreachable"] > 0
    assert set(channels) == {"PHONE", "SMSWRIT", "ONLINEWRIT"}
    answered = {c["basedOn"][0]["reference"] for c in data["Communication"]}
    assert all(f"CommunicationRequest/{r['id']}" in answered for r in requests.values() if r["status"] == "completed")
