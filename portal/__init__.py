"""The Reflex portal: patient, doctor and admin pages over the backend services."""
