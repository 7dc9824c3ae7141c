"""Analysis of finished jobs: flatness and sharpness measures, and interpolation between weights."""
