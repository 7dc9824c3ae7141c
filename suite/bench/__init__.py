"""Benchmarks and checks: the averaging update's speed, the cost of a matrix, the dashboard's speed (over
synthetic results), and the GPU smoke check."""
