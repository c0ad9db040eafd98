# Entry points (see README): `make main`, `make test` and `make lint`. All create .venv/ when needed.
.PHONY: setup main test lint

setup:
	@bash scripts/setup.sh

main: setup
	.venv/bin/bioplastic stream --quick --stream split-digits --scenario task \
		--strategies bio,naive,ewc,si,replay,packnet,eg,enforced --logdir runs

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
