"""Training runs: the resolved configuration, the loop, the run folder and the command line."""
