#!/usr/bin/env python3
"""An old-style inventory script: no _meta, so each host is asked with --host."""

import json
import sys

if sys.argv[1:] == ["--list"]:
    print(json.dumps({"db": ["db-1", "db-2"], "all": {"children": ["db"], "vars": {"dc": "x"}}}))
elif sys.argv[1] == "--host":
    print(json.dumps({"db-1": {"ansible_port": 5022, "role": "primary"}}.get(sys.argv[2], {})))
