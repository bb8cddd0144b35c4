"""Ways to look at sweeps: leaderboards (and, later, reports). Reads from MLflow only."""
