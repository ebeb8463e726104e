#!/usr/bin/env python3
"""A third -i: an inventory script with _meta, adding a group and overriding host variables."""

import json
import sys

if sys.argv[1:] == ["--list"]:
    print(
        json.dumps(
            {
                "db": {"hosts": ["d1", "d2"], "vars": {"engine": "postgres"}},
                "web": {"vars": {"both_group": "cmdb"}},
                "_meta": {
                    "hostvars": {
                        "w2": {"http_port": 9090, "ansible_host": "198.51.100.2"},
                        "d2": {"ansible_port": 2201},
                    }
                },
            }
        )
    )
else:
    print("{}")
