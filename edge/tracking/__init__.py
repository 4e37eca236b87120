"""Faces followed over frames: tracks and their smoothed labels (tracks.py), the ByteTrack-style
matcher kept to compare, alerts, people counts and compliance, zones, and the events raised.
"""
