"""Serial console proxy (Nova's nova-serialproxy): ``python -m proxies.serial``."""
from proxies.console_proxy import main

if __name__ == "__main__":
    main("serial")
