# The two commands a newcomer needs (each does its own set-up; see README.md).
.PHONY: demo test bench

demo:  ## run the example salon site on SQLite (installs the package and its demo extra into .venv, nothing else)
	bash .ci/demo

test:  ## lint + the whole suite (SQLite, PostgreSQL, real SMTP, Chromium) on the built wheel in a fresh virtualenv
	bash .ci/test

bench:  ## print the benchmarks' side-by-side ratios
	bash .ci/setup
	.venv/bin/python benchmarks/booking_page.py
	.venv/bin/python benchmarks/booking_page.py --db postgresql
	.venv/bin/python benchmarks/grants.py
	.venv/bin/python benchmarks/followups.py
	.venv/bin/python benchmarks/followups.py --db postgresql --skip-parallel
	.venv/bin/python benchmarks/day_list.py --helper bulk
	.venv/bin/python benchmarks/day_list.py --helper bulk --db postgresql
	.venv/bin/python benchmarks/day_list_example.py
	.venv/bin/python benchmarks/day_list_example.py --db postgresql
	.venv/bin/python benchmarks/journal.py
