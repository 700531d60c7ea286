"""CareOps Desk: composition root and everything cross-cutting."""

__version__ = "0.1.0"
APP_NAME = "CareOps Desk"
