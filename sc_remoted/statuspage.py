"""
C{/} of the status port: the process totals and every vantage point in
one HTML table, for a person with a browser.

The page is made on the server from the same snapshot that C{/status}
serves as JSON (L{sc_remoted.status.Status.snapshot}), so the two never
disagree.  Every value is escaped: monitornames (and the socket names
made from them) come from the scampers.  It reloads itself with a meta refresh
and carries no script; its Content-Security-Policy allows nothing but
its own inline style.
"""

import html
from typing import Any, Callable, Dict, List

from twisted.web.resource import Resource

REFRESH_SECONDS = 5

# (key in a vantage point's snapshot, column heading)
COLUMNS = [
    ("id", "id"),
    ("name", "name"),
    ("monitorname", "monitorname"),
    ("peer", "peer"),
    ("state", "state"),
    ("since", "since"),
    ("resumes", "resumes"),
    ("channels", "channels"),
    ("bytesIn", "bytes from scamper"),
    ("bytesOut", "bytes to scamper"),
]

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; }
th, td { padding: 0.2em 0.7em; border-bottom: 1px solid #ccc; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.zombie { color: #a40; }
dl.totals { display: grid; grid-template-columns: max-content max-content; gap: 0.2em 1em; }
dl.totals dt { font-weight: bold; }
dl.totals dd { margin: 0; }
"""

CONTENT_SECURITY_POLICY = b"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def escape(value: Any) -> str:
    """Any value as HTML text, quotes included (it also goes in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def formatCount(value: int) -> str:
    """C{1234567} as C{1,234,567}."""
    return "{:,}".format(value)


def formatDuration(seconds: float) -> str:
    """A duration in its two largest units: C{3d 4h}, C{5m 2s}, C{7s}."""
    seconds = max(0, int(seconds))
    parts: List[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append("%d%s" % (seconds // size, unit))
            seconds %= size
    return " ".join(parts[:2])


def _totals(snapshot: Dict[str, Any]) -> str:
    totals = snapshot["totals"]
    items = [
        ("vantage points", "%s (%s connected, %s zombies)" % (
            formatCount(totals["vantagePoints"]), formatCount(totals["connected"]), formatCount(totals["zombies"]))),
        ("channels open", formatCount(totals["channels"])),
        ("arrived / departed", "%s / %s" % (formatCount(totals["arrived"]), formatCount(totals["departed"]))),
        ("bytes from / to scamper", "%s / %s" % (formatCount(totals["bytesIn"]), formatCount(totals["bytesOut"]))),
        ("messages from / to scamper", "%s / %s" % (
            formatCount(totals["messagesIn"]), formatCount(totals["messagesOut"]))),
        ("up for", formatDuration(snapshot["uptime"])),
    ]
    rows = "".join("<dt>%s</dt><dd>%s</dd>" % (escape(term), escape(value)) for term, value in items)
    return '<dl class="totals" id="totals">%s</dl>' % (rows,)


def _cell(key: str, vp: Dict[str, Any], now: float) -> str:
    value = vp[key]
    if key == "since":
        return '<td class="since" title="%s">%s ago</td>' % (escape(vp["sinceUTC"]), escape(formatDuration(now - value)))
    if key in ("resumes", "channels", "bytesIn", "bytesOut"):
        return '<td class="%s number">%s</td>' % (key, escape(formatCount(value)))
    return '<td class="%s">%s</td>' % (key, escape(value))


def _row(vp: Dict[str, Any], now: float) -> str:
    cells = "".join(_cell(key, vp, now) for key, _ in COLUMNS)
    return '<tr class="vp %s" id="vp-%s">%s</tr>' % (escape(vp["state"]), escape(vp["id"]), cells)


def renderStatusPage(snapshot: Dict[str, Any]) -> str:
    """The whole page for one L{Status.snapshot}."""
    vps: List[Dict[str, Any]] = snapshot["vantagePoints"]
    heading = "".join("<th>%s</th>" % (escape(title),) for _, title in COLUMNS)
    if vps:
        body = "".join(_row(vp, snapshot["now"]) for vp in vps)
    else:
        body = '<tr class="empty"><td colspan="%d">No vantage point is connected.</td></tr>' % (len(COLUMNS),)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="%(refresh)d">'
        "<title>sc_remoted %(version)s</title><style>%(style)s</style></head>\n"
        "<body><h1>sc_remoted %(version)s</h1>\n"
        "<p>pid %(pid)s; this page reloads every %(refresh)d s; "
        'also as <a href="/status">JSON</a> and <a href="/metrics">Prometheus metrics</a>.</p>\n'
        "%(totals)s\n"
        '<table id="vantage-points"><thead><tr>%(heading)s</tr></thead>\n'
        "<tbody>%(body)s</tbody></table>\n"
        "</body></html>\n"
    ) % {
        "refresh": REFRESH_SECONDS,
        "version": escape(snapshot["version"]),
        "pid": escape(snapshot["pid"]),
        "style": _STYLE,
        "totals": _totals(snapshot),
        "heading": heading,
        "body": body,
    }


class StatusHTMLPage(Resource):
    """C{/}: L{renderStatusPage} of a fresh snapshot at each request."""

    isLeaf = True

    def __init__(self, snapshot: Callable[[], Dict[str, Any]]) -> None:
        Resource.__init__(self)
        self.snapshot = snapshot

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
        request.setHeader(b"x-content-type-options", b"nosniff")
        return renderStatusPage(self.snapshot()).encode("utf-8")
