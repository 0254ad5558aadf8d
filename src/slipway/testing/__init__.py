"""Test helpers: fakes and fixtures that let tests drive Slipway without patching."""
