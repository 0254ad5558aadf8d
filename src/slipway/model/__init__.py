"""The pure domain model: configuration, states, artifacts and releases. No I/O here."""
