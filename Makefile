# Two entry points (see README): `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export STRATUS_STATE_DIR ?= $(CURDIR)/var
PYTEST_ARGS ?=

.PHONY: run test deps-run deps-test db bench

deps-run:
	tools/install-deps run

deps-test:
	tools/install-deps test

db:
	flask --app app db upgrade
	flask --app app stratus bootstrap

# Install and start the whole cloud on the embedded default (SQLite + filesystem broker + fake driver).
run: deps-run db
	@echo
	@echo "Stratus is starting: API http://127.0.0.1:8774, Flower http://127.0.0.1:5555 (admin/stratus)."
	@echo "In another shell:  source $(STRATUS_STATE_DIR)/openrc && $(CURDIR)/$(VENV)/bin/openstack server list"
	@echo "  (the openstack CLI: $(VENV)/bin/pip install python-openstackclient, or any installed one)"
	@echo
	honcho start -f Procfile

# Install everything and run the whole test suite (unit, functional on every DB/broker, libvirt, vcsim, browser).
test: deps-test
	tools/ensure-services
	tools/libvirt-up
	tools/run-tests $(PYTEST_ARGS)

bench: deps-run
	python -m bench.run
