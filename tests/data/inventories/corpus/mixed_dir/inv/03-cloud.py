#!/usr/bin/env python3
import json
import sys

if sys.argv[1:] == ["--list"]:
    print(
        json.dumps(
            {
                "cloud": {"hosts": ["vm-1", "vm-2"], "vars": {"provider": "acme"}},
                "web": ["vm-2"],
                "_meta": {"hostvars": {"vm-1": {"ansible_host": "198.51.100.7"}}},
            }
        )
    )
else:
    print("{}")
