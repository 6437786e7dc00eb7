"""Local development stack: the service on this machine with no cloud account."""
