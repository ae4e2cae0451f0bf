# Entry points (see README): `make run`, `make run-vms`, `make dashboard` and `make test`.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export STRATUS_STATE_DIR ?= $(CURDIR)/var
PYTEST_ARGS ?=

.PHONY: run run-vms dashboard test deps-run deps-vms deps-test db bench soak

deps-run:
	tools/install-deps run

deps-vms:
	tools/install-deps vms

deps-test:
	tools/install-deps test

db:
	flask --app app db upgrade
	flask --app app stratus bootstrap

# Install and start the whole cloud (embedded default: SQLite + filesystem broker + fake driver) and the openstack
# CLI; prints how to use it once the API answers.
run: deps-run
	tools/stratus-run

# The same with real QEMU guests (README "Real virtual machines"): libvirt + QEMU, libvirt-python, libvirtd and
# virtlogd, the instance network's bridge, the test guest built and uploaded as images.
run-vms: export STRATUS_COMPUTE_DRIVER := libvirt
run-vms: deps-vms
	tools/build-test-image
	tools/stratus-run --test-image

# `make run` with Horizon, the OpenStack dashboard (unmodified, from PyPI, in its own venv .venv-horizon), in front
# of it on STRATUS_DASHBOARD_BIND (127.0.0.1:8080); prints its URL and credentials once both answer.
dashboard: deps-run
	tools/dashboard

# Install everything and run the whole test suite (unit, functional on every DB/broker, libvirt, vcsim, browser).
test: deps-test
	tools/ensure-services
	tools/libvirt-up
	tools/run-tests $(PYTEST_ARGS)

bench: deps-run
	python -m bench.run

# The chaos soak (bench/README.md "Chaos soak"): SOAK_ARGS="--backend postgresql-redis --duration 1800".
SOAK_ARGS ?=
soak: deps-run
	tools/ensure-services
	python tools/soak.py $(SOAK_ARGS)
