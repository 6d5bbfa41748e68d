"""Reading run folders: reports beside the paper's numbers, plots, the paper's speed-up estimate."""
