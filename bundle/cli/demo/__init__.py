"""``libe-gc demo``: a complete ensemble on an endpoint that a newcomer understands in a minute."""
