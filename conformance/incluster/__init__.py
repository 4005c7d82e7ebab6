"""Running kaic inside the cluster: Sonobuoy plugin, standalone Job, least-privilege RBAC."""
