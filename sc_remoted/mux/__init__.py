"""
The mux interface (newest upstream sc_remoted C{-M}): one socket through
which a client sees every connected vantage point, with its metadata, and
opens channels to any of them.  See L{sc_remoted.mux.codec} for the bytes,
L{sc_remoted.mux.server} for the daemon's side, L{sc_remoted.mux.client}
for a Twisted client and L{sc_remoted.mux.metadata} for the meta-file.
"""
