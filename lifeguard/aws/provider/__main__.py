"""``python -m lifeguard.aws.provider --schema`` prints the schema; ``... <engine address>`` serves it."""

import sys

from lifeguard.aws.provider import main

main(sys.argv[1:])
