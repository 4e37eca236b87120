"""Where frames come from: sources (camera, file, folder, stream), capture on its own thread,
the one-item hand-off to the frame loop, scene cuts, and test videos made from photos.
"""
