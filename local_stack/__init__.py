"""The local stack: moto on loopback standing in for AWS, plus the real components as processes."""
