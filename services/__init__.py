"""The domain: plain Python over the cache. No Qt, no HTTP (enforced by import-linter)."""
