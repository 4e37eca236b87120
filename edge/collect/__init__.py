"""Learn from the device's own camera: `edge run --collect DIR` keeps the faces worth a person's
look (edge/collect/sink.py, chosen by edge/collect/selection.py), `edge label DIR` labels them
in a browser page or from a script (edge/collect/command.py, edge/collect/server.py), and
`trainer fit BASE DIR/labelled` trains on them. The folder and its manifest:
edge/collect/manifest.py.
"""
