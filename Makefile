# composeops.platform — the two commands of the README, and the pieces they are made of.
SHELL := /bin/bash
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

local:  ## set up, start the local test host and run playbooks/site.yml on it
	@tests/harness/local.sh

local-down:  ## remove the local test host
	@tests/harness/local.sh down

local-clean:  ## remove the local test host, the fixture registry, its volume and all test images
	@tests/harness/local.sh clean

test:  ## all test tiers: lint, unit, sanity, package, inventories, molecule
	@tests/run all

test-fast:  ## the tiers that need no Docker: lint, unit, sanity, package, inventories
	@tests/run lint unit sanity package inventories

.PHONY: help local local-down local-clean test test-fast
