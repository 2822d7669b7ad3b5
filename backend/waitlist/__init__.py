"""Waitlist entries, offers and policy."""
