"""The commands (compare, tune, score, report, and training without Ray): flags and flow only, over the
library. Only a job's ``main`` sets anything for its process.
"""
