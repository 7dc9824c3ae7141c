"""Results and statistics: the job folders' files, the hooks that record each evaluation and its sample
previews there, the leaderboard with its paired statistics, and performance profiles."""
