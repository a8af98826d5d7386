"""Development helpers that the tests and the benchmarks share (never imported by the product):
real processes of a stack (stack), measured runs (measured), throwaway databases (services)."""
