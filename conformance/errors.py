"""Errors the user can act on; the CLI prints them as one line and exits 2."""


class KaicError(Exception):
    """A usage or configuration problem (bad kubeconfig, unknown profile, unreachable server)."""


class ProfileError(KaicError):
    """A profile file that does not validate; the message names file, line and key."""
