#!/bin/sh
echo "notify: $*"
