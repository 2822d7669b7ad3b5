"""Notification preferences and the outbox."""
