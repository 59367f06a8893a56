"""
sc_remoted: a controller for remote scamper instances, on Twisted.

scamper started as C{scamper -R host:port} dials out to this daemon; for
each one it places a UNIX socket in a directory through which local
programs drive the remote scamper as if it were local.
"""

__version__ = "0.1.0"
