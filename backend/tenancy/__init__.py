"""Practices (tenants) and their clinics."""
