"""native package."""
