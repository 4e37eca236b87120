"""Where results go: JSON lines, the annotated video and window (outputs.py, draw.py), MQTT with
Home Assistant discovery, webhooks, snapshots and the live dashboard.
"""
