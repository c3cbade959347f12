"""Field operations (外出执行, R8): registered (team, case, place, planned times), started and ended,
and supervised while they run: a team member without a live stream, or whose stream drops or goes
bad, raises an alert."""
