"""Process wiring above both the API (service/) and the workers (worker/): `advlab serve` runs
them together (serve). The only package besides the CLI that may import both."""
