"""kaic: Kubernetes AI conformance, by probing what the cluster actually does."""

__version__ = "0.1.0"
