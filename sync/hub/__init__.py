"""The central service: changes feed, push, authentication, server-side role checks, audit ingestion.

Modules: ``db`` (schema and engines), ``auth`` (passwords, bearer tokens, pluggable authenticator),
``service`` (the pure logic, no HTTP), ``permissions`` (entity -> permissions, from the one table in
``app.security.roles``), ``api`` (the FastAPI app), ``server`` (uvicorn, TLS) and ``cli``
(``careops hub ...``). The protocol is docs/sync-protocol.md.
"""
