"""Reading run folders: plots (and, later, reports and speed-up estimates)."""
