"""Incremental pull: what changed in the EHR since the last pull, into the cache.

Per resource type, in dependency order: search with ``_lastUpdated=ge<mark - overlap>``, page by
the server's next links (the client), strip each resource to the minimum-necessary elements and
feed the BulkImporter, which upserts by version (so the overlap re-reads cost nothing) and
quarantines what cannot be used. The high-water mark is the newest ``meta.lastUpdated`` seen (the
server's clock, so the workstation's clock does not matter), saved only after that type's
resources are committed; the overlap re-reads a few minutes so that a resource the server
committed while the last pull ran, stamped earlier than the newest one seen, is not missed.

Where the vendor insists on a search context (Epic wants a patient on clinical searches, Oracle a
patient or location and a closed date range for appointments), the type is asked once per
patient the cache knows; nothing outside this module and the profile knows that happens.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from app.cache.models import Patient
from app.logs import Safe
from sync.fhir.bulk_import import ORDER, BulkImporter, ImportResult
from sync.fhir.elements import strip
from sync.fhir.instants import format_instant, parse_instant

logger = logging.getLogger(__name__)

DEFAULT_OVERLAP = dt.timedelta(minutes=5)
# Oracle needs a closed date range on Appointment searches: the window the board cares about.
APPOINTMENT_WINDOW = (dt.timedelta(days=30), dt.timedelta(days=180))
_ID_CHUNK = 50  # ids per `_id=` search when a type can only be asked for by id


@dataclass
class PullResult:
    """An :class:`ImportResult` plus what only a pull has."""

    imported: ImportResult
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # type -> why it was not asked for
    marks: dict[str, str] = field(default_factory=dict)  # type -> new high-water mark

    def as_counts(self) -> dict[str, int]:
        """Counts by resource type plus ``quarantined``: what ``careops ehr pull --json`` prints."""
        out = dict(sorted(self.imported.counts.items()))
        out["quarantined"] = self.imported.quarantined
        return out


def mark_key(base_url: str, rtype: str, what: str = "mark") -> str:
    """The meta key of a type's high-water mark (or other pull state); a different EHR base starts
    from scratch."""
    return f"ehr.{what}.{hashlib.sha256(base_url.encode()).hexdigest()[:12]}.{rtype}"


class _Unaskable(Exception):
    """The vendor's search rules for a type cannot be met by a pull (no context to give)."""


class EhrPull:
    """One pull of every readable type from one EHR into the cache."""

    def __init__(
        self,
        client: Any,  # sync.fhir.client.FhirClient
        cache: Any,
        *,
        source: str = "ehr",
        overlap: dt.timedelta = DEFAULT_OVERLAP,
        types: tuple[str, ...] | None = None,
        full: bool = False,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.client = client
        self.cache = cache
        self.source = source
        self.overlap = overlap
        self.types = types or ORDER
        self.full = full
        self.now = now

    def run(self, *, progress: Callable[[int], None] | None = None,
            cancel: Callable[[], bool] | None = None) -> PullResult:
        self.client.capabilities()  # the effective profile: the server's statement over the defaults
        profile = self.client.profile
        importer = BulkImporter(self.cache, source=self.source, progress=progress, cancel=cancel)
        result = PullResult(importer.result)
        for rtype in self.types:
            if not profile.can_read(rtype):
                result.skipped[rtype] = "not offered by this EHR"
                continue
            key = mark_key(str(self.client.base_url), rtype)
            since = None if self.full else parse_instant(self.cache.get_meta(key) or "")
            newest = since
            covered_key = mark_key(str(self.client.base_url), rtype, "patients")
            self._covered = set() if self.full else set(json.loads(self.cache.get_meta(covered_key) or "[]"))
            self._asked: list[str] = []
            try:
                for params in self._queries(rtype, since):
                    for resource in self.client.search(rtype, params):
                        seen = parse_instant(str((resource.get("meta") or {}).get("lastUpdated") or ""))
                        if seen is not None and (newest is None or seen > newest):
                            newest = seen
                        importer.add(json.dumps(strip(resource), separators=(",", ":")).encode())
                        if importer.cancelled:
                            break
                    if importer.cancelled:
                        break
            except _Unaskable as exc:
                result.skipped[rtype] = str(exc)
                continue
            if importer.cancelled:
                break
            importer.end_file()
            importer.flush()
            if newest is not None and newest != since:
                # Saved only now that everything up to it is committed.
                self.cache.set_meta(key, format_instant(newest))
                result.marks[rtype] = format_instant(newest)
            if self._asked:
                self.cache.set_meta(covered_key, json.dumps(sorted(self._covered | set(self._asked))))
        importer.finish()
        result.warnings = list(dict.fromkeys(f"{w.severity}: {w.code}" for w in self.client.warnings))
        logger.info("ehr pull: %d accepted, %d quarantined, %d warnings",
                    importer.result.accepted, importer.result.quarantined, len(result.warnings))
        for rtype, why in result.skipped.items():
            logger.info("ehr pull skipped %s: %s", Safe(rtype), Safe(why))
        return result

    # -- what to ask ---------------------------------------------------------------------------

    def _queries(self, rtype: str, since: dt.datetime | None) -> Iterator[dict[str, Any]]:
        """The searches that together cover ``rtype``'s changes, within the vendor's rules."""
        base: dict[str, Any] = {}
        if since is not None:
            base["_lastUpdated"] = "ge" + format_instant(since - self.overlap)
        need = self.client.profile.search_context.get(rtype)
        if need is None or need.from_config:  # the client adds configured parameters itself
            yield base
            return
        if need.all_of or (need.any_of and not {"patient", "_id"} & set(need.any_of)):
            raise _Unaskable(f"this EHR needs {need.missing([])} on every search")
        if need.date_range:
            now = self.now()
            before, after = APPOINTMENT_WINDOW
            base[need.date_range] = [f"ge{(now - before).date().isoformat()}", f"lt{(now + after).date().isoformat()}"]
        if not need.any_of:
            yield base
            return
        patients = self._known_patients()
        if "patient" in need.any_of:
            for pid in patients:
                self._asked.append(pid)
                # A patient first seen since the last pull: their whole history, not the changes.
                query = base if pid in self._covered else {k: v for k, v in base.items() if k != "_lastUpdated"}
                yield query | {"patient": pid}
        else:
            for i in range(0, len(patients), _ID_CHUNK):
                yield base | {"_id": ",".join(patients[i:i + _ID_CHUNK])}

    def _known_patients(self) -> list[str]:
        with self.cache.reader() as s:
            return list(s.scalars(select(Patient.id).where(Patient.source == self.source).order_by(Patient.id)))

