"""What operators see of a running process: structured logs with request ids (logs.py), error tracking (sentry.py)
and metrics (metrics.py). Logging and error tracking are set up by backend.logging_config.configure_logging()."""
