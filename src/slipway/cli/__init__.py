"""The command line: parse, call a service, render. No deployment logic lives here."""
