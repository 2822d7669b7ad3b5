"""Availability, time off and appointments."""
