"""A proxy-manager style client for ward's integration tests: Python requests through an HTTP
or SOCKS5 proxy, trusting the test CA. Prints one JSON object: status, body or error."""

import argparse
import json
import sys

import requests


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--proxy", required=True, help="http://u:p@host:port or socks5h://...")
    p.add_argument("--cacert", required=True)
    p.add_argument("--url", required=True)
    args = p.parse_args()
    proxies = {"https": args.proxy, "http": args.proxy}
    try:
        with requests.Session() as s:
            s.trust_env = False  # no ambient proxy variables
            r = s.get(args.url, proxies=proxies, verify=args.cacert, timeout=20)
            r2 = s.get(args.url, proxies=proxies, verify=args.cacert, timeout=20)
        print(json.dumps({"status": r.status_code, "body": r.text, "second_status": r2.status_code}))
    except requests.exceptions.ProxyError as e:
        print(json.dumps({"error": "proxy", "detail": str(e)}))
    except requests.exceptions.RequestException as e:
        print(json.dumps({"error": type(e).__name__, "detail": str(e)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
