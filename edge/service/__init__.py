"""`edge run` as a systemd service: the unit template (maskedge.service.in, package data), how it
is filled in (unit.py), what is checked on the machine it is installed on (host.py) and the
`edge service unit|install` commands (command.py). Standard library and typer only.
"""
