"""The Hammerlab target server: the seed's "remote service", a Flask app on gevent that knows how busy it is.

Start it with `python -m target_server`, or under gunicorn with `create_app()` from `target_server.app`.
"""
