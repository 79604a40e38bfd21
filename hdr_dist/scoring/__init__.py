"""``hdr score``'s library: inputs listed, archives walked, labels matched, bytes read, the Ray Data
pipeline, the driver's loop and its commits, the output folder and its summary.
"""
