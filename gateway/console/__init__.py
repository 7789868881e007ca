"""The operator console (``/console``): server-rendered pages over the gateway's own services, behind an admin
key login. It reads what the gateway already keeps (metrics, registry, drift watch, loop store, request log)
and adds nothing to the request path: its time series come from a sampler task reading the metrics."""
