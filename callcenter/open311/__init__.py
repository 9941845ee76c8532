"""Open311 GeoReport v2 under /open311/v2/ (issue 14 item 2): `router.py` the routes,
`formats.py` JSON and XML and the spec's error bodies, `services.py` the service list from the
city's categories, `submit.py` POST requests through the intake workflow, `listing.py` GET requests,
`clients.py` the registered clients (api_key, rate limit), `cli.py` `callcenter open311 ...`.
The rules of what is offered and shown are in `ticketing/open311.py`."""
