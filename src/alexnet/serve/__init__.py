"""`alexnet serve`: a local web page for trained runs (FastAPI + uvicorn, vanilla JS, no CDN, no build step).

    from alexnet.serve.app import create_app
    app = create_app(["runs/demo"])          # loopback by default; create_app(..., token="...") for other hosts

Modules: app (the factory: token, host and size checks, JSON errors), limits (the limits and the bounded worker),
state (each run's model, index and uploads), api (the routes of the five views and their dependencies), views
(their answers), static/ (index.html, app.js, style.css).
"""
