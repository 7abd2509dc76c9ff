"""What Vigil learns from its incidents over a period: trends, noise, similar incidents."""
