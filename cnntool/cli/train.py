def train() -> None:
    """placeholder"""
