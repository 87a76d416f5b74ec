"""Certificates and keys for Flower across machines (fedmnist/flower/credentials.py's command line).

    python tools/credentials.py --address 192.168.1.10 --address servidor.ejemplo --clients 5

writes certificados/ (ca.crt, server.pem, server.key) and claves/ (cliente_<N>, cliente_<N>.pub); see
docs/flower.md for where each file goes.
"""

import argparse
import sys
from pathlib import Path

from fedmnist.flower.credentials import ALWAYS, DAYS, Credentials, CredentialsError


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--address",
        action="append",
        default=[],
        help="an IP address or host name the SuperNodes and the instructor use to reach the SuperLink (repeat it)",
    )
    parser.add_argument("--clients", "-K", type=int, required=True, help="K: one key pair per SuperNode")
    parser.add_argument("--certificates", type=Path, default=Path("certificados"), help="default: %(default)s")
    parser.add_argument("--keys", type=Path, default=Path("claves"), help="default: %(default)s")
    parser.add_argument("--days", type=int, default=DAYS, help="validity of the certificates (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.address:
        parser.error("give the SuperLink's address with --address (127.0.0.1 and localhost are always included)")
    if not 1 <= args.days <= 3650:
        parser.error(f"--days {args.days}: must be in 1..3650")
    try:
        made = Credentials(args.certificates, args.keys, args.clients, args.address, args.days)
    except CredentialsError as err:
        sys.exit(f"credentials: error: {err}")
    except OSError as err:
        sys.exit(f"credentials: error: {err.filename or ''}: {err.strerror}")
    names = ", ".join([*dict.fromkeys([*args.address, *ALWAYS])])
    print(f"Wrote {made.ca}, {made.cert} and {made.key} (for {names}),")
    print(f"and {args.clients} SuperNode key pairs in {args.keys} (private keys readable by their owner only)")


if __name__ == "__main__":
    main()
