"""The grid visibility projection: node liveness with hysteresis, degraded and blind modes,
under-frequency protection that needs the full view, and the daily energy balance."""
