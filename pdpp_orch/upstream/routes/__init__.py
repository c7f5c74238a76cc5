"""The HTTP routes of the simulated upstreams: one module per service, plus the control routes.

`app` wraps every service route with the fault plan and the request counters.
"""
