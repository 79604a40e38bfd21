"""Pages and their geometry: image bytes -> grayscale pages; scans -> MNIST space and fields -> strips;
the ink cut into blobs. Training and scoring both prepare images through here.
"""
