"""Benchmarks and checks: the averaging update's speed, the cost of a matrix, and the GPU smoke check."""
