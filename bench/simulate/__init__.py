"""The waitlist simulator's command line and synthetic month (the engine is backend.waitlist.simulation)."""
