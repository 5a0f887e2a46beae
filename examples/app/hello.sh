#!/bin/sh
# archfleet's sample app: says which CPU it runs on.
echo "hello from $(busybox uname -m)"
