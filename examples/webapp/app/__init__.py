"""A small web service that Slipway's example pipeline builds, tests and deploys."""
