"""Users, memberships, patients and providers; login and tokens."""
