"""Analysis: flatness and sharpness measures of finished jobs (or during training, by a hook), and interpolation
between weights."""
