"""SPICE HTML5 console proxy (Nova's nova-spicehtml5proxy): ``python -m proxies.spicehtml5``."""
from proxies.console_proxy import main

if __name__ == "__main__":
    main("spice-html5")
