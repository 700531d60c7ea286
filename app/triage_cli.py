"""``careops triage classify [--json]``: suggest an urgency for one referral text read on stdin.

No cache is opened and nothing is stored: the text is read, classified by the local model and
forgotten. It is never logged. Thresholds and the optional external endpoint come from
``[triage]`` in config.toml; an endpoint without a BAA in ``baa_endpoints`` is refused (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys

from app.config import Paths, default_home, load_settings

MAX_INPUT = 1_000_000  # bytes read from stdin; a referral letter is a few kilobytes


def cmd_classify(args: argparse.Namespace) -> int:
    from services.triage import TriagePolicy, classify

    policy = TriagePolicy.from_settings(load_settings(Paths(default_home())))
    raw = sys.stdin.buffer.read(MAX_INPUT + 1) if sys.stdin is not None else b""
    if len(raw) > MAX_INPUT:
        print("error: the referral text is longer than 1 MB", file=sys.stderr)
        return 2
    text = raw.decode("utf-8", errors="replace")
    suggestion = classify(text, policy)
    if args.json:
        print(json.dumps(suggestion.summary(), ensure_ascii=False))
    else:
        queue = "human triage queue" if suggestion.queue == "human" else "routed automatically"
        print(f"{suggestion.urgency} (confidence {suggestion.confidence:.2f}), {queue}")
        for reason in suggestion.reasons:
            print(f"  - {reason}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``triage classify`` to the ``careops`` parser."""
    triage = subparsers.add_parser("triage", help="referral triage with the local model")
    cmds = triage.add_subparsers(dest="triage_cmd", required=True)
    c = cmds.add_parser("classify", help="suggest an urgency for one referral text read on stdin")
    c.add_argument("--json", action="store_true", help='print {"urgency", "confidence", "queue", "reasons"}')
    c.set_defaults(func=cmd_classify)
