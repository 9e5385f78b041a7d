#!/bin/sh
echo "dns updated"
