"""The WeChat official-account edge: the /wechat endpoint, the API client factory, the menu and
the outbox worker. ``init_app(app, services)`` wires it into the application factory."""
