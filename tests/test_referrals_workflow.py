"""The referral state machine on its own: which moves are allowed, why the others are refused,
and what an organisation may override in config.toml [referrals]."""

from __future__ import annotations

import datetime as dt

import pytest

from app.config import Paths, ReferralSettings, load_settings
from app.errors import ConfigError
from services import referral_workflow as wf
from services.referral_workflow import Facts, Workflow

TODAY = dt.date(2026, 3, 2)
W = Workflow()

TRIAGED = {"urgency": "urgent"}
APPROVED = {"preauth_needed": True, "preauth_status": "approved", "preauth_expires_on": dt.date(2026, 6, 1)}

# (from, facts besides the status, to, reason given, expected refusal code or None)
CASES = [
    # out of New
    ("new", {}, "triage", None, None),
    ("new", {}, "awaiting-preauth", None, "untriaged"),
    ("new", {}, "ready-to-schedule", None, "untriaged"),
    ("new", {}, "scheduled", None, "untriaged"),
    ("new", TRIAGED, "ready-to-schedule", None, None),  # the referrer's priority counts as triaged
    ("new", {}, "closed", None, "reason-needed"),
    ("new", {}, "closed", "duplicate", None),
    ("new", {}, "completed", None, "complete-from-scheduled"),
    ("new", {}, "new", None, "same-column"),
    # out of Triage
    ("triage", {}, "new", None, "no-way-back"),
    ("triage", {}, "awaiting-preauth", None, "untriaged"),
    ("triage", TRIAGED, "awaiting-preauth", None, None),
    ("triage", TRIAGED | {"preauth_needed": True}, "ready-to-schedule", None, "preauth-needed"),
    ("triage", TRIAGED | {"preauth_needed": False}, "ready-to-schedule", None, None),
    ("triage", TRIAGED | {"preauth_needed": True, "preauth_status": "not-required"}, "ready-to-schedule", None, None),
    ("triage", TRIAGED, "scheduled", None, "book-first"),
    # out of Awaiting pre-auth
    ("awaiting-preauth", TRIAGED | {"preauth_needed": True, "preauth_status": "requested"}, "ready-to-schedule", None,
     "preauth-pending"),
    ("awaiting-preauth", TRIAGED | {"preauth_needed": True, "preauth_status": "appeal"}, "ready-to-schedule", None,
     "preauth-pending"),
    ("awaiting-preauth", TRIAGED | {"preauth_needed": True, "preauth_status": "denied"}, "ready-to-schedule", None,
     "preauth-denied"),
    ("awaiting-preauth", TRIAGED | {"preauth_needed": True, "preauth_status": "expired"}, "ready-to-schedule", None,
     "preauth-expired"),
    ("awaiting-preauth", TRIAGED | APPROVED | {"preauth_expires_on": dt.date(2026, 3, 1)}, "ready-to-schedule",
     None, "preauth-expired"),
    ("awaiting-preauth", TRIAGED | APPROVED, "ready-to-schedule", None, None),
    ("awaiting-preauth", TRIAGED, "triage", None, None),
    # out of Ready to schedule
    ("ready-to-schedule", TRIAGED | APPROVED, "scheduled", None, "book-first"),
    ("ready-to-schedule", TRIAGED | APPROVED | {"booked_appointments": 1}, "scheduled", None, None),
    ("ready-to-schedule", TRIAGED, "completed", None, "complete-from-scheduled"),
    # out of Scheduled
    ("scheduled", TRIAGED | {"booked_appointments": 1}, "ready-to-schedule", None, "appointment-booked"),
    ("scheduled", TRIAGED | {"booked_appointments": 1}, "closed", "patient moved away", "appointment-booked"),
    ("scheduled", TRIAGED, "ready-to-schedule", None, None),
    ("scheduled", TRIAGED | {"booked_appointments": 1}, "completed", None, "not-yet-seen"),
    ("scheduled", TRIAGED | {"booked_appointments": 1, "appointment_started": True}, "completed", None, None),
    # terminal
    ("completed", TRIAGED, "scheduled", None, "final"),
    ("completed", TRIAGED, "closed", "x", "final"),
    ("closed", TRIAGED, "ready-to-schedule", None, "reopen-to-triage"),
    ("closed", TRIAGED, "triage", None, "reason-needed"),
    ("closed", TRIAGED, "triage", "closed by mistake", None),
    ("new", {}, "no-such-column", None, "unknown-column"),
]


@pytest.mark.parametrize(("frm", "facts", "to", "reason", "expected"), CASES)
def test_moves(frm, facts, to, reason, expected):
    refusal = W.check_move(Facts(status=frm, **facts), to, reason=reason, today=TODAY)
    assert (refusal.code if refusal else None) == expected, refusal
    if refusal:
        assert refusal.reason and refusal.reason[0].isupper()


def test_reasons_read_as_the_issue_asks():
    def reason(frm, to, **facts):
        refusal = W.check_move(Facts(status=frm, **facts), to, today=TODAY)
        assert refusal is not None
        return refusal.reason

    assert reason("new", "ready-to-schedule") == "An untriaged referral cannot skip Triage"
    assert reason("awaiting-preauth", "ready-to-schedule", urgency="routine", preauth_needed=True,
                  preauth_status="requested") == "Pre-authorization is still pending: record the payer's decision first"  # fmt: skip
    assert reason("ready-to-schedule", "scheduled", urgency="routine") == "Book an appointment before moving to Scheduled"
    assert reason("triage", "closed") == "Closing needs a reason"


def test_allowed_moves_stay_within_the_transition_table():
    rich = {"urgency": "urgent", "preauth_needed": True, "preauth_status": "approved", "appointment_started": True}
    for frm in wf.COLUMNS:
        for booked in (0, 1):
            allowed = W.allowed_moves(Facts(status=frm, booked_appointments=booked, **rich), today=TODAY)
            assert set(allowed) <= wf.TRANSITIONS[frm], frm
    assert W.allowed_moves(Facts(status="new"), today=TODAY) == ("triage", "closed")
    assert W.allowed_moves(Facts(status="completed", urgency="urgent"), today=TODAY) == ()


def test_defaults():
    assert [c.title for c in W.columns()] == [
        "New", "Triage", "Awaiting pre-auth", "Ready to schedule", "Scheduled", "Completed", "Closed",
    ]  # fmt: skip
    assert [c.code for c in W.columns(include_closed=False)] == list(wf.OPEN_COLUMNS)
    assert (W.sla_days("emergent"), W.sla_days("urgent"), W.sla_days("routine"), W.sla_days(None)) == (1, 7, 30, 2)
    assert W.needs_preauth("org-1", "Any Payer") and not W.needs_preauth(None, None)
    assert W.auto_accept_triage


def test_an_organisation_overrides_titles_sla_and_payers():
    w = Workflow(ReferralSettings(
        column_titles={"awaiting-preauth": "Waiting for insurer"}, sla_days={"urgent": 14, "untriaged": 1},
        preauth_payers=("Acme Health", "org-9"), preauth_exempt_payers=("org-9",), auto_accept_triage=False,
    ))  # fmt: skip
    assert w.title("awaiting-preauth") == "Waiting for insurer" and w.title("new") == "New"
    assert w.sla_days("urgent") == 14 and w.sla_days("routine") == 30 and w.sla_days(None) == 1
    assert w.needs_preauth("org-1", "ACME health")  # by name, case-insensitive
    assert not w.needs_preauth("org-2", "Other Payer")
    assert not w.needs_preauth("org-9", "Acme Health")  # exempt wins
    assert not w.auto_accept_triage
    refusal = w.check_move(Facts(status="triage", urgency="routine", preauth_needed=True), "ready-to-schedule")
    assert refusal and "(Waiting for insurer)" in refusal.reason


def test_config_toml_referrals_table(tmp_path):
    paths = Paths(tmp_path)
    paths.config.write_text(
        '[referrals]\npreauth_exempt_payers = ["org-self"]\n'
        '[referrals.sla_days]\nurgent = 10\n[referrals.column_titles]\nnew = "Inbox"\n', encoding="utf-8"
    )  # fmt: skip
    settings = load_settings(paths).referrals
    assert settings.sla_days == {"urgent": 10} and settings.preauth_exempt_payers == ("org-self",)
    assert Workflow(settings).title("new") == "Inbox"


@pytest.mark.parametrize(("toml", "words"), [
    ('[referrals.sla_days]\nsoon = 3\n', "unknown keys soon"),
    ('[referrals.sla_days]\nurgent = 0\n', "more than 0"),
    ('[referrals.column_titles]\nlimbo = "Limbo"\n', "unknown columns limbo"),
    ('[referrals]\npreauth_payers = "everyone"\n', "list of payer"),
    ('[referrals]\ncolour = "blue"\n', "unknown settings"),
])  # fmt: skip
def test_config_mistakes_are_refused_clearly(tmp_path, toml, words):
    paths = Paths(tmp_path)
    paths.config.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=words):
        load_settings(paths)
