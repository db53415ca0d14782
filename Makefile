# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install benchmark clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Simulate a day of API traffic, learn the benign baseline, then score traffic with attackers in it.
# `make demo EMBEDDER=static` embeds with the static embedding (about 2 minutes instead of 5; see the README).
EMBEDDER ?= $(or $(CLONEWATCH_EMBEDDER),torch)
demo: $(STAMP)
	$(BIN)/clonewatch simulate --scenario benign --seed 11 --out demo-data/baseline
	$(BIN)/clonewatch train --input demo-data/baseline/events.jsonl --model demo-data/model.cwm --embedder $(EMBEDDER)
	$(BIN)/clonewatch simulate --scenario demo --seed 1 --out demo-data/traffic
	rm -rf demo-data/store demo-data/out
	$(BIN)/clonewatch run --input demo-data/traffic/events.jsonl --model demo-data/model.cwm \
		--store chdb://./demo-data/store --decisions demo-data/out/decisions.jsonl \
		--dead-letters demo-data/out/dead-letters.jsonl

# Two test processes, a file each at a time: one waits on Kafka and subprocesses while the other computes.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

benchmark: $(STAMP)
	$(BIN)/python benchmarks/detection.py --scale 0.3 --baseline-clients 100 300 1000
	$(BIN)/python benchmarks/markdown.py
	$(BIN)/python benchmarks/oracle_probing.py --eval-seeds 1 2 3
	$(BIN)/python benchmarks/first_look.py
	$(BIN)/python benchmarks/attack_tools.py
	$(BIN)/python benchmarks/attack_tools.py --batched
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/embedding.py
	$(BIN)/python benchmarks/api_latency.py
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/overload.py

clean:
	rm -rf demo-data clonewatch-data clonewatch-out kafka-data
