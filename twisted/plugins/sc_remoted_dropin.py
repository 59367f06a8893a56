from twisted.application.service import ServiceMaker

scRemoted = ServiceMaker(
    "sc_remoted",
    "sc_remoted.tap",
    "Controller for remote scamper instances (scamper -R host:port).",
    "sc_remoted",
)
