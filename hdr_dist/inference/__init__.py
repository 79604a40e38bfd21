"""A trained model at work, for both halves: the device, predictions and metrics, CTC, calibration,
and the reader kinds (``readers``) where a digit model and a field model part ways.
"""
