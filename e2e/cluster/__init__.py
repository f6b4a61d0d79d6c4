"""The local Kubernetes control plane berth's tests run against (see controlplane.py)."""
