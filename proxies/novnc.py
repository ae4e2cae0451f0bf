"""noVNC console proxy (Nova's nova-novncproxy): ``python -m proxies.novnc``."""
from proxies.console_proxy import main

if __name__ == "__main__":
    main("novnc")
