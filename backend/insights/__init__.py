"""Insights for the practice's admins: how well freed slots are refilled, offers, no-shows, dead letters."""
