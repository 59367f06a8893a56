"""
The meta-file (upstream sc_remoted C{-m}): attributes of vantage points,
by scamper C{-M} name, delivered to mux clients in VP_UPDATE.

Lines are C{name attr value}; lines starting with C{#} and blank lines are
skipped.  C{attr} is case-insensitive; C{tag} may repeat, for the others
the last value wins; unknown attributes are ignored.  A line with fewer
than three fields makes the whole file invalid: fatal at start-up, and on
reload (SIGHUP) the previous data is kept.
"""

from typing import Callable, Dict, List, Optional, Tuple

from ..eventlog import EventLogger
from .codec import Attribute

log = EventLogger()

ATTRIBUTES = {
    "asn4": Attribute.ASN4,
    "asn6": Attribute.ASN6,
    "cc": Attribute.CC,
    "st": Attribute.ST,
    "place": Attribute.PLACE,
    "latlong": Attribute.LATLONG,
    "shortname": Attribute.SHORTNAME,
    "iata": Attribute.IATA,
    "tag": Attribute.TAG,
}

AttributeList = Tuple[Tuple[int, str], ...]


class MetadataError(Exception):
    """A meta-file that cannot be used; one line for the operator."""


def parseMetadata(text: str, source: str = "meta-file") -> Dict[str, AttributeList]:
    """
    The attributes of each name in C{text}: single-valued ones in
    attribute-number order, then the tags in file order.

    @raise MetadataError: naming the first bad line.
    """
    single: Dict[str, Dict[int, str]] = {}
    tags: Dict[str, List[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split(None, 2)
        if len(fields) < 3:
            raise MetadataError(
                "%s line %d: expected 'name attribute value', got %r" % (source, number, stripped)
            )
        name, attr, value = fields
        if "\0" in value:
            raise MetadataError("%s line %d: a value may not hold a NUL" % (source, number))
        kind = ATTRIBUTES.get(attr.lower())
        if kind is None:
            continue
        if kind == Attribute.TAG:
            tags.setdefault(name, []).append(value)
        else:
            single.setdefault(name, {})[kind] = value
    result: Dict[str, AttributeList] = {}
    for name in list(single) + [n for n in tags if n not in single]:
        values = single.get(name, {})
        result[name] = tuple(sorted(values.items())) + tuple(
            (int(Attribute.TAG), tag) for tag in tags.get(name, [])
        )
    return result


def readMetadata(path: str) -> Dict[str, AttributeList]:
    """
    Read and parse the meta-file at C{path}.

    @raise MetadataError: if it cannot be read, is not UTF-8, or is invalid.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise MetadataError("cannot read meta-file %s: %s" % (path, e.strerror))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MetadataError("meta-file %s is not UTF-8 (byte %d)" % (path, e.start))
    return parseMetadata(text, "meta-file %s" % (path,))


class Metadata:
    """
    The meta-file's current data, and whom to tell when a reload changes it.

    @param path: the meta-file, or L{None} for no metadata at all.
    @raise MetadataError: if the file cannot be used at start-up.
    """

    def __init__(self, path: Optional[str] = None) -> None:
        self.path = path
        self.entries: Dict[str, AttributeList] = readMetadata(path) if path is not None else {}
        self._listeners: List[Callable[[], object]] = []

    def attributesFor(self, monitorname: Optional[str]) -> AttributeList:
        """The meta-file's attributes for a scamper C{-M} name (none without one)."""
        if not monitorname:
            return ()
        return self.entries.get(monitorname, ())

    def addListener(self, listener: Callable[[], object]) -> None:
        """Call C{listener()} after every reload that changed the data."""
        self._listeners.append(listener)

    def reload(self) -> bool:
        """
        Read the file again; on failure keep the previous data and log why.
        Returns whether the new data was taken.
        """
        if self.path is None:
            return False
        try:
            entries = readMetadata(self.path)
        except MetadataError as e:
            log.error(
                "metadata reload failed, keeping the previous data: {reason}",
                reason=str(e),
                sc_event="mux.metadata_reload_failed",
            )
            return False
        changed = entries != self.entries
        self.entries = entries
        log.info(
            "metadata reloaded from {path}: {count} names{changed}",
            path=self.path,
            count=len(entries),
            changed="" if changed else ", unchanged",
            sc_event="mux.metadata_reloaded",
        )
        if changed:
            for listener in list(self._listeners):
                try:
                    listener()
                except Exception:
                    log.failure("metadata listener {listener!r} failed", listener=listener)
        return True
