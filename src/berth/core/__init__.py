"""The pure domain core: plain data and functions, no network, no clock, no files.

Everything else (the operator, the simulator, the recommender) imports these terms.
"""
