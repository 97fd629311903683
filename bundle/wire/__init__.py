"""What crosses the wire to an endpoint.

Functions shipped by value with the globals they read, resource specifications, and the cause read
back from a remote error.
"""
