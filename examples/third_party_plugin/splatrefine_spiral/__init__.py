"""A view sampler that walks a spiral around the head (an example third-party plugin)."""
