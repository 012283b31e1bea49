"""Development and test tooling (`make dev`, the tests, the benchmark); the app never imports it."""
