"""Browser-console proxies (noVNC, SPICE HTML5) built on websockify; see proxies/console_proxy.py."""
