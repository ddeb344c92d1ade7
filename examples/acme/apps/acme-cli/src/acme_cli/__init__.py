"""The ``acme`` command."""
