"""Load test (not a test): Locust against the REST API of a practice group of 10,000 patients. See __main__.py."""
