"""The probe agent: what runs inside probe pods. Standard library only, so the probe image is
the kaic package on a plain Python base and nothing else."""
