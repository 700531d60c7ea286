"""`careops triage classify [--json]`: stdin in, JSON or a short text out, nothing stored or logged."""

from __future__ import annotations

import io
import json
import logging

import pytest

from app.cli import main

CANARY = "Wilhelmina Fotheringay-Phipps"


def run(monkeypatch, capsys, text: str, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8"))))
    rc = main(["triage", "classify", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_json_output(home, monkeypatch, capsys):
    rc, out, _ = run(monkeypatch, capsys, "74F sudden facial droop and slurred speech 30 min ago. FAST positive.", "--json")
    assert rc == 0
    body = json.loads(out)
    assert set(body) == {"urgency", "confidence", "queue", "reasons"}
    assert body["urgency"] == "emergent" and body["queue"] == "human"
    assert 0 <= body["confidence"] <= 1 and all(isinstance(r, str) for r in body["reasons"])


def test_human_text_output(home, monkeypatch, capsys):
    rc, out, _ = run(monkeypatch, capsys, "Routine review of stable, well controlled hypothyroidism. No new symptoms.")
    assert rc == 0
    assert out.splitlines()[0].startswith(("routine", "urgent", "emergent"))
    assert "confidence" in out


def test_empty_stdin_goes_to_a_person(home, monkeypatch, capsys):
    rc, out, _ = run(monkeypatch, capsys, "", "--json")
    assert rc == 0 and json.loads(out)["queue"] == "human"


def test_invalid_utf8_does_not_crash(home, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe chest pain at rest \xc3")))
    assert main(["triage", "classify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["queue"] == "human"


def test_text_is_never_logged_nor_stored(home, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    rc, out, _ = run(monkeypatch, capsys, f"{CANARY} has chest pain at rest, sweaty.", "--json")
    assert rc == 0 and CANARY not in out
    assert CANARY not in caplog.text
    for f in home.rglob("*"):
        if f.is_file():
            assert CANARY.encode() not in f.read_bytes(), f
    assert not (home / "cache.db").exists()


def test_external_endpoint_without_baa_is_refused(home, monkeypatch, capsys):
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[triage]\nendpoint = "https://llm.example.com/v1/triage"\n')
    rc, out, err = run(monkeypatch, capsys, "chest pain", "--json")
    assert rc == 2 and out == ""
    assert "BAA" in err and "Traceback" not in err


def test_thresholds_from_config(home, monkeypatch, capsys):
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text("[triage]\nthreshold = 1.0\nroutine_threshold = 1.0\n")
    rc, out, _ = run(monkeypatch, capsys, "Routine review of stable, well controlled hypertension. Not urgent.", "--json")
    assert rc == 0 and json.loads(out)["queue"] == "human"  # nothing is ever that certain


@pytest.mark.parametrize("argv", [["triage"], ["triage", "nope"]])
def test_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
