"""berth: gives every HPC/AI job its berth on mixed accelerators, for the least energy."""

__version__ = "0.1.0"
