"""The error surgery raises (its own module, so that the graph and the head surgery share it)."""


class SurgeryError(ValueError):
    """A removal that cannot be done, saying why and what to change."""
