"""Board simulator: a physical channel model with ground truth behind the real wire protocol."""
