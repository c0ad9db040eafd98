# Two entry points (see README): `make main` and `make test`. Both create .venv/ when needed.
.PHONY: setup main test lint

setup:
	@bash scripts/setup.sh

main: setup
	.venv/bin/bioplastic compare --seeds 2 --epochs 20 --out runs/compare

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
