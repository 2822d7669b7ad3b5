"""The service layer: tenant-aware domains, the REST API and the Celery worker. Never imports Reflex."""
