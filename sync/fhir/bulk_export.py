"""FHIR Bulk Data export (https://hl7.org/fhir/uv/bulkdata/export.html) straight into the cache.

Kick-off (``Prefer: respond-async``) -> poll the status URL -> stream each output file, line by
line, through :func:`elements.strip` into the :class:`BulkImporter`. Nothing touches the disk in
plaintext: the files carry PHI and go from the socket to the encrypted cache.

Every request goes through :class:`FhirClient` (``send``/``stream``), so TLS, the token, its
refresh after a 401 and the backoff on 429/5xx are the client's. The status URL and every file
URL must be on the base URL's scheme, host and port, or the token would travel elsewhere.
The manifest's ``transactionTime`` becomes the next export's ``_since``, per resource type and
export scope, saved only after everything up to it is committed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.logs import Safe
from sync.fhir.bulk_import import (
    BATCH_SIZE,
    ORDER,
    QUARANTINE_RAW_LIMIT,
    BulkImporter,
    ImportResult,
)
from sync.fhir.client import (
    EhrError,
    EhrRefused,
    EhrUnavailable,
    FhirClient,
    parse_retry_after,
)
from sync.fhir.elements import strip
from sync.fhir.instants import parse_instant
from sync.fhir.parsing import MAX_RESOURCE_BYTES, InboundError, parse_resource
from sync.fhir.pull import mark_key

logger = logging.getLogger(__name__)

POLL_TIMEOUT = 3600.0  # seconds from kick-off to manifest
POLL_BASE = 1.0  # first wait when the server gives no Retry-After; doubles up to POLL_CAP
POLL_CAP = 60.0
NDJSON = "application/fhir+ndjson"
FHIR_JSON = "application/fhir+json"
LEVELS = ("system", "patient", "group")
_LABEL = "$export"
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")


class ExportTimedOut(EhrUnavailable):
    remedy = "The EHR is taking too long to prepare the export. Try again later or ask for fewer record types."


@dataclass(frozen=True)
class ExportFile:
    """One downloaded output file (no URL: it may carry a token or job id)."""

    type: str
    lines: int
    declared: int | None = None  # the manifest's ``count``, when given


@dataclass
class ExportResult:
    """An :class:`ImportResult` plus what only an export has."""

    imported: ImportResult
    since: str | None = None  # the ``_since`` asked for
    transaction_time: str | None = None
    files: list[ExportFile] = field(default_factory=list)
    errors: int = 0  # lines of the error files (OperationOutcomes); their text is not kept
    skipped_types: list[str] = field(default_factory=list)  # output the cache cannot use, not downloaded

    @property
    def cancelled(self) -> bool:
        return self.imported.cancelled


@dataclass(frozen=True)
class _Output:
    type: str
    url: httpx.URL
    declared: int | None


@dataclass(frozen=True)
class _Manifest:
    transaction_time: str
    requires_token: bool
    output: list[_Output]
    error: list[_Output]


def export_into_cache(
    client: FhirClient,
    cache: Any,
    *,
    level: str = "system",
    group_id: str | None = None,
    types: Iterable[str] | None = None,
    since: dt.datetime | str | None = None,
    full: bool = False,
    source: str = "ehr",
    batch_size: int = BATCH_SIZE,
    poll_timeout: float = POLL_TIMEOUT,
    progress: Callable[[int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ExportResult:
    """Run one Bulk Data export from the client's EHR into ``cache``.

    Args:
        level: ``system`` ([base]/$export), ``patient`` (Patient/$export) or ``group``
            (Group/[group_id]/$export).
        types: resource types to ask for (``_type``); default: those of ``bulk_import.ORDER`` the
            server's CapabilityStatement offers.
        since: ``_since``; default: the ``transactionTime`` of the last export of these types at
            this scope (none when a type has none yet); ``full=True`` asks for everything.
        poll_timeout: seconds to wait for the manifest; then the job is deleted and
            :class:`ExportTimedOut` raised.
        progress, cancel: the importer's callbacks (lines read; asked after each batch, each file
            and each status poll); ``batch_size``: resources per transaction.
        sleep, clock: injectable for tests.

    Raises the client's errors (``EhrRefused``, ``EhrUnavailable``, ``EhrAuthFailed``), messages
    free of PHI. The job is deleted on the server afterwards, whatever happened (best effort).
    """
    if level not in LEVELS:
        raise ValueError(f"unknown export level {level!r}")
    if level == "group" and not (isinstance(group_id, str) and _ID.fullmatch(group_id)):
        raise ValueError("a group export needs a valid Group id")
    wanted = _types(client, types)
    scope = "group." + group_id if level == "group" and group_id else level
    keys = {t: mark_key(str(client.base_url), t, what=f"export.{scope}") for t in wanted}
    asked = None if full else _since_text(since) if since is not None else _stored_since(cache, keys.values())
    importer = BulkImporter(cache, source=source, batch_size=batch_size, progress=progress, cancel=cancel)
    result = ExportResult(importer.result, since=asked)

    status_url = _kick_off(client, level, group_id, wanted, asked)
    logger.info("bulk export started: %s level, %d types, incremental %s", Safe(level), len(wanted), asked is not None)
    try:
        manifest = _poll(client, status_url, poll_timeout, cancel, sleep, clock)
        if manifest is not None:
            _download_all(client, manifest, wanted, importer, result)
    finally:
        _delete_job(client, status_url)  # done, failed or cancelled: the server may drop the files
    if manifest is None:
        importer.result.cancelled = True  # cancelled while the server was still preparing
    importer.finish()
    if manifest is not None and not result.cancelled:
        result.transaction_time = manifest.transaction_time
        for key in keys.values():
            cache.set_meta(key, manifest.transaction_time)
    logger.info(
        "bulk export: %d files, %d lines, %d accepted, %d quarantined, %d export errors%s",
        len(result.files), result.imported.lines, result.imported.accepted, result.imported.quarantined,
        result.errors, Safe(" (cancelled)" if result.cancelled else ""),
    )
    return result


# -- what to ask ----------------------------------------------------------------------------------


def _types(client: FhirClient, types: Iterable[str] | None) -> tuple[str, ...]:
    if types is None:
        client.capabilities()
        wanted = tuple(t for t in ORDER if client.profile.can_read(t))
    else:
        asked = set(types)
        if not asked <= set(ORDER):
            raise ValueError("only the record types of bulk_import.ORDER can be imported")
        wanted = tuple(t for t in ORDER if t in asked)
    if not wanted:
        raise EhrRefused("The EHR offers none of the record types CareOps reads.")
    return wanted


def _since_text(since: dt.datetime | str) -> str:
    if isinstance(since, dt.datetime):
        value = since if since.tzinfo else since.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if parse_instant(since) is None:
        raise ValueError("since must be a FHIR instant")
    return since


def _stored_since(cache: Any, keys: Iterable[str]) -> str | None:
    """The oldest stored mark of the types asked for; None (everything) when one has none."""
    parsed = [(parse_instant(m or ""), m) for m in (cache.get_meta(k) for k in keys)]
    if not parsed or any(when is None for when, _ in parsed):
        return None
    return min(parsed)[1]  # the server's own text, sent back as is


# -- kick-off and status --------------------------------------------------------------------------


def _kick_off(
    client: FhirClient, level: str, group_id: str | None, types: tuple[str, ...], since: str | None
) -> httpx.URL:
    path = {"system": "$export", "patient": "Patient/$export", "group": f"Group/{group_id}/$export"}[level]
    base = client.base_url
    params = [("_type", ",".join(types))] + ([("_since", since)] if since else [])
    url = base.copy_with(path=base.path.rstrip("/") + "/" + path, params=params)
    headers = {"Accept": FHIR_JSON, "Prefer": "respond-async"}
    try:
        reply = client.send("GET", url, label=_LABEL, headers=headers)
    except EhrRefused as exc:
        detail = f": {', '.join(exc.issue_codes)}" if exc.issue_codes else ""
        raise EhrRefused(
            f"The EHR refused to start the export (HTTP {exc.status}{detail}).", exc.status, exc.issue_codes
        ) from None
    if reply.status != 202:
        raise EhrRefused(f"The EHR did not start an export (HTTP {reply.status}).", reply.status)
    status_url = _same_server(client, reply.headers.get("Content-Location"), reply.status)
    if status_url is None:
        raise EhrRefused("The EHR started an export but did not say where to follow it.", reply.status)
    return status_url


def _same_server(client: FhirClient, link: Any, status: int) -> httpx.URL | None:
    if not isinstance(link, str) or not link:
        return None
    try:
        url = client.base_url.join(link)
    except (httpx.InvalidURL, ValueError):
        raise EhrRefused("The EHR sent an export address that is not a URL.", status) from None
    if not client.same_origin(url):
        raise EhrRefused("The EHR pointed the export to another server; it was not followed.", status)
    return url


def _poll(
    client: FhirClient,
    status_url: httpx.URL,
    timeout: float,
    cancel: Callable[[], bool] | None,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> _Manifest | None:
    """The manifest, or None when cancelled. 429/5xx are retried inside ``client.send``."""
    deadline = clock() + timeout
    polls = 0
    while True:
        reply = client.send("GET", status_url, label=_LABEL, headers={"Accept": "application/json"})
        if reply.status == 200:
            return _manifest(client, reply.json())
        if reply.status != 202:
            raise EhrRefused(f"The EHR's export status made no sense (HTTP {reply.status}).", reply.status)
        # X-Progress is the server's free text: not logged.
        wait = parse_retry_after(reply.headers.get("Retry-After"))
        wait = min(POLL_CAP, POLL_BASE * 2**polls if wait is None else wait)
        left = deadline - clock()
        if left <= 0:
            minutes = max(1, round(timeout / 60))
            raise ExportTimedOut(f"The EHR did not finish the export within {minutes} min; it was cancelled.")
        if cancel is not None and cancel():
            return None
        logger.debug("bulk export running; next status check in %.1f s", min(wait, left))
        sleep(min(wait, left))
        polls += 1


def _manifest(client: FhirClient, doc: Any) -> _Manifest:
    def bad() -> EhrRefused:
        return EhrRefused("The EHR's export manifest is malformed.", 200)

    if not isinstance(doc, dict):
        raise bad()
    when = doc.get("transactionTime")
    token = doc.get("requiresAccessToken")
    if parse_instant(when) is None or not isinstance(token, bool):
        raise bad()

    def outputs(name: str) -> list[_Output]:
        items = doc.get(name, [])
        if not isinstance(items, list):
            raise bad()
        out = []
        for item in items:
            rtype = item.get("type") if isinstance(item, dict) else None
            if not isinstance(rtype, str) or not _TYPE.fullmatch(rtype):
                raise bad()
            url = _same_server(client, item.get("url"), 200)
            if url is None:
                raise bad()
            count = item.get("count")
            out.append(_Output(rtype, url, count if isinstance(count, int) and not isinstance(count, bool) else None))
        return out

    # Every URL is checked before any download: a manifest pointing elsewhere is refused whole.
    return _Manifest(when, token, outputs("output"), outputs("error"))


def _delete_job(client: FhirClient, status_url: httpx.URL) -> None:
    try:
        client.send("DELETE", status_url, label=_LABEL, retry=False)
    except EhrError as exc:
        logger.info("bulk export: the job could not be deleted (%s)", Safe(type(exc).__name__))


# -- downloads ------------------------------------------------------------------------------------


def _download_all(
    client: FhirClient, manifest: _Manifest, wanted: tuple[str, ...], importer: BulkImporter, result: ExportResult
) -> None:
    usable = [o for o in manifest.output if o.type in wanted]
    result.skipped_types = sorted({o.type for o in manifest.output if o.type not in wanted})
    usable.sort(key=lambda o: ORDER.index(o.type))  # stable: a type's files keep the server's order
    for output in usable:
        lines = 0
        with closing(_lines(client, output, manifest.requires_token)) as stream:
            for raw, oversized in stream:
                lines += 1
                importer.add(raw if oversized else _stripped(raw), oversized=oversized)
                if importer.cancelled:
                    break
        result.files.append(ExportFile(output.type, lines, output.declared))
        if importer.cancelled:
            return
        importer.end_file()
        importer.flush()  # commits the file and asks the cancel callback
        if importer.cancelled:
            return
    for output in manifest.error:
        with closing(_lines(client, output, manifest.requires_token)) as stream:
            result.errors += sum(1 for _ in stream)


def _stripped(raw: bytes) -> bytes:
    """The minimum-necessary copy of a line; an unreadable line as is, for the importer to
    quarantine with its reason."""
    try:
        resource = parse_resource(raw)
    except InboundError:
        return raw
    return json.dumps(strip(resource), separators=(",", ":")).encode()


def _lines(client: FhirClient, output: _Output, requires_token: bool) -> Iterator[tuple[bytes, bool]]:
    headers = {"Accept": NDJSON}
    with client.stream(output.url, label=output.type, headers=headers, authorize=requires_token) as response:
        yield from split_lines(response.iter_bytes())


def split_lines(chunks: Iterable[bytes], max_bytes: int = MAX_RESOURCE_BYTES) -> Iterator[tuple[bytes, bool]]:
    """Yield (line, oversized) for each non-blank line of a byte stream, like
    ``bulk_import.iter_lines``: a line over ``max_bytes`` yields only its first
    QUARANTINE_RAW_LIMIT bytes, and the rest of it is skipped without being kept."""
    limit = max_bytes + 1  # room for a "\r"
    line = bytearray()
    skipping = False
    for chunk in chunks:
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            stop = len(chunk) if end < 0 else end
            if not skipping:
                line += chunk[start:min(stop, start + limit + 1 - len(line))]
                if len(line) > limit:
                    yield bytes(line[:QUARANTINE_RAW_LIMIT]), True
                    line.clear()
                    skipping = True
            if end < 0:
                break
            if not skipping and line.strip():
                yield bytes(line.rstrip(b"\r")), False
            line.clear()
            skipping = False
            start = end + 1
    if not skipping and line.strip():
        yield bytes(line.rstrip(b"\r")), False


__all__ = ["ExportFile", "ExportResult", "ExportTimedOut", "export_into_cache", "split_lines"]
