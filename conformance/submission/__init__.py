"""CNCF AI conformance submission artifacts built from a run's results.json."""
