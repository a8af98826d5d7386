"""The neutral layer both the API (service/) and the workers (worker/) build on: settings
(config), logging, the SQL store (store/) and the broker (broker, queue). It imports advcore at
most, never service, worker or client."""
